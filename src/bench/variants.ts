// What a benchmark compares: weft's backend (the subject) against its
// hand-built equals (the baselines), each as a two-node lab with one pod per
// node. Adding a backend's baselines means adding a case to `benchPlan`.
import type { BackendType } from '../config/netconf.js';
import { WeftError } from '../errors.js';
import { ipBatch, runCommand } from '../lab/command.js';
import { DEFAULT_NETWORK, Lab } from '../lab/lab.js';
import type { Topology } from '../lab/topology.js';
import { Cidr } from '../core/cidr.js';

export interface BenchVariant {
  /** Names the variant in reports, e.g. "weft host-gw", "hand-built routes". */
  label: string;
  /** Brings up lab `labName`: 2 nodes, 1 pod each, this variant's data path in place. */
  build(labName: string, topology: Topology): Promise<Lab>;
}

export interface BenchPlan {
  subject: BenchVariant;
  /** Each is compared with the subject; ratios are subject / baseline. */
  baselines: BenchVariant[];
  /** Why an expected comparison is missing (shown in the report). */
  notes: string[];
}

const VXLAN_VNI = 1;
const VXLAN_PORT = 8472;
const VXLAN_OVERHEAD = 50;
const UNDERLAY_MTU = 1500;

export function weftVariant(label: string, netConf: Record<string, unknown>): BenchVariant {
  return {
    label,
    build: (name, topology) => Lab.up({ name, nodes: 2, podsPerNode: 1, netConf, topology }),
  };
}

/** Pod subnet of node `index` in a hand-built lab. */
function handSubnet(index: number): Cidr {
  return Cidr.parse(`${DEFAULT_NETWORK.split('.').slice(0, 2).join('.')}.${index}.0/24`);
}

/** A lab without agents: subnet.env written by hand, pods wired by CNI, then `wire` lays the data path. */
function handBuiltVariant(label: string, podMtu: number, wire: (lab: Lab) => Promise<void>): BenchVariant {
  return {
    label,
    async build(name, topology) {
      const lab = await Lab.up({ name, nodes: 2, podsPerNode: 1, topology, startAgents: false });
      try {
        for (const node of lab.nodes) {
          await lab.writeSubnetEnv(node, handSubnet(node.index).toString(), { mtu: podMtu });
          await lab.addPod(node);
        }
        await wire(lab);
      } catch (err) {
        await lab.down().catch(() => {});
        throw err;
      }
      return lab;
    },
  };
}

/** host-gw's equal: `ip route add <peer subnet> via <peer ip>` on every node. */
export const handRoutes = handBuiltVariant('hand-built routes', UNDERLAY_MTU, async (lab) => {
  for (const node of lab.nodes) {
    const peers = lab.nodes.filter((p) => p !== node);
    await ipBatch(node.ns, peers.map((p) => `route add ${handSubnet(p.index)} via ${p.underlayIP} dev eth0`));
  }
});

function vtepMac(index: number): string {
  return `02:77:6c:00:00:${index.toString(16).padStart(2, '0')}`;
}

/** vxlan's equal: a kernel VXLAN device per node with static neighbour, FDB and onlink routes. */
export const handVxlan = handBuiltVariant('hand-built vxlan', UNDERLAY_MTU - VXLAN_OVERHEAD, async (lab) => {
  const dev = 'vxlan0';
  for (const node of lab.nodes) {
    const peers = lab.nodes.filter((p) => p !== node);
    await ipBatch(node.ns, [
      `link add ${dev} type vxlan id ${VXLAN_VNI} local ${node.underlayIP} dev eth0 dstport ${VXLAN_PORT} nolearning`,
      `link set ${dev} address ${vtepMac(node.index)} mtu ${UNDERLAY_MTU - VXLAN_OVERHEAD} up`,
      `addr add ${handSubnet(node.index).ip}/32 dev ${dev}`,
      ...peers.map((p) => `neigh add ${handSubnet(p.index).ip} lladdr ${vtepMac(p.index)} dev ${dev} nud permanent`),
    ]);
    await runCommand(['bridge', '-n', node.ns, '-batch', '-'], {
      input: peers.map((p) => `fdb append ${vtepMac(p.index)} dev ${dev} dst ${p.underlayIP}`).join('\n') + '\n',
    });
    await ipBatch(node.ns, peers.map((p) => `route add ${handSubnet(p.index)} via ${handSubnet(p.index).ip} dev ${dev} onlink`));
  }
});

function defaultNetConf(backend: BackendType, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { Network: DEFAULT_NETWORK, Backend: { Type: backend, ...extra } };
}

export function benchPlan(backend: BackendType, netConf?: Record<string, unknown>, topology: Topology = 'flat'): BenchPlan {
  const subject = weftVariant(`weft ${backend}`, netConf ?? defaultNetConf(backend));
  switch (backend) {
    case 'host-gw':
    case 'bgp': // BIRD learns the same routes host-gw writes
      if (topology === 'routed' && backend === 'host-gw') {
        throw new WeftError('host-gw cannot reach a node behind a router, so it has nothing to measure on --topology routed', 'use --topology flat, or bench vxlan');
      }
      if (topology === 'routed' && backend === 'bgp') {
        // Peer routes would point at the lab's router, which speaks no BGP and so knows no pod subnet.
        throw new WeftError('bgp across a router needs the router to learn the pod routes (a ToR in Backend.ExternalPeers), which the bench lab has not', 'use --topology flat');
      }
      return { subject, baselines: [handRoutes], notes: [] };
    case 'vxlan':
      // The tunnel against its hand-built equal, and against not tunnelling at
      // all: what the encapsulation costs. host-gw cannot cross a router.
      return topology === 'routed'
        ? { subject, baselines: [handVxlan], notes: ['no host-gw comparison: host-gw cannot reach a node behind a router'] }
        : { subject, baselines: [handVxlan, weftVariant('weft host-gw', defaultNetConf('host-gw'))], notes: [] };
    case 'udp':
      // Userspace encap against the kernel's, and against its own simplest mode.
      return { subject, baselines: [handVxlan, weftVariant('weft udp (Mode simple)', defaultNetConf('udp', { Mode: 'simple' }))], notes: [] };
    default:
      throw new WeftError(`no benchmark plan for backend "${String(backend)}"`, 'use host-gw, vxlan, udp or bgp');
  }
}
