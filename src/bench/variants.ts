// What a benchmark compares: weft's backend (the subject) against its
// hand-built equals (the baselines), each as a two-node lab with one pod per
// node, in the address families the run measures. Adding a backend's
// baselines means adding a case to `benchPlan`.
import type { BackendType } from '../config/netconf.js';
import { WeftError } from '../errors.js';
import { ipBatch, runCommand } from '../lab/command.js';
import { DEFAULT_IPV6_NETWORK, DEFAULT_NETWORK, Lab, labNetConf } from '../lab/lab.js';
import { nodeUnderlayIP, type LabNode } from '../lab/state.js';
import type { Topology } from '../lab/topology.js';
import { Cidr, type Family } from '../core/cidr.js';

export interface BenchVariant {
  /** Names the variant in reports, e.g. "weft host-gw", "hand-built routes". */
  label: string;
  /** Brings up lab `labName`: 2 nodes, 1 pod each, this variant's data path in place in every family of `families`. */
  build(labName: string, topology: Topology, families: Family[]): Promise<Lab>;
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
/** Outer Ethernet, IP, UDP and VXLAN headers: the IPv6 header is 20 bytes longer. */
const VXLAN_OVERHEAD: Record<Family, number> = { 4: 50, 6: 70 };
const UNDERLAY_MTU = 1500;

export function weftVariant(label: string, netConf: Record<string, unknown>): BenchVariant {
  return {
    label,
    build: (name, topology, families) => Lab.up({ name, nodes: 2, podsPerNode: 1, netConf, topology, families }),
  };
}

/** The pod networks of the hand-built labs, and the subnet length of a node's share. */
const HAND_NETWORKS: Record<Family, { network: Cidr; subnetLen: number }> = {
  4: { network: Cidr.parse(DEFAULT_NETWORK), subnetLen: 24 },
  6: { network: Cidr.parse(DEFAULT_IPV6_NETWORK), subnetLen: 64 },
};

/** Pod subnet of node `index` in a hand-built lab: 10.244.<index>.0/24, 2001:db8:1000:<index>::/64. */
export function handSubnet(family: Family, index: number): Cidr {
  const { network, subnetLen } = HAND_NETWORKS[family];
  return network.subnet(subnetLen, BigInt(index));
}

/**
 * A lab without agents: subnet.env written by hand in the lab's families
 * (the first one primary), pods wired by CNI, then `wire` lays the data path.
 */
function handBuiltVariant(label: string, podMtu: (families: Family[]) => number, wire: (lab: Lab) => Promise<void>): BenchVariant {
  return {
    label,
    async build(name, topology, families) {
      const lab = await Lab.up({ name, nodes: 2, podsPerNode: 1, topology, families, startAgents: false });
      try {
        const [primary, second] = lab.families;
        for (const node of lab.nodes) {
          const ipv6Subnet = second ? handSubnet(second, node.index).toString() : undefined;
          await lab.writeSubnetEnv(node, handSubnet(primary!, node.index).toString(), { mtu: podMtu(lab.families), ipv6Subnet });
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

/** A peer's underlay address in `family`: every node of a lab has one in each family it runs. */
function peerIP(peer: LabNode, family: Family): string {
  const ip = nodeUnderlayIP(peer, family);
  if (!ip) throw new Error(`node ${peer.name} has no IPv${family} underlay address`);
  return ip;
}

/** host-gw's equal: `ip route add <peer subnet> via <peer ip>` on every node, in each family. */
export const handRoutes = handBuiltVariant('hand-built routes', () => UNDERLAY_MTU, async (lab) => {
  for (const node of lab.nodes) {
    const peers = lab.nodes.filter((p) => p !== node);
    await ipBatch(node.ns, lab.families.flatMap((f) => peers.map((p) => `route add ${handSubnet(f, p.index)} via ${peerIP(p, f)} dev eth0`)));
  }
});

/** One device per family, as flannel has (vxlan0 over the IPv4 underlay, vxlan6 over the IPv6 one). */
const HAND_VXLAN_DEVICE: Record<Family, string> = { 4: 'vxlan0', 6: 'vxlan6' };

function vtepMac(family: Family, index: number): string {
  return `02:77:6c:0${family}:00:${index.toString(16).padStart(2, '0')}`;
}

/**
 * vxlan's equal: per node and family, a kernel VXLAN device over that
 * family's underlay with static neighbour, FDB and onlink routes. Pods have
 * one MTU for both families, so a dual-stack lab's fits the IPv6 tunnel.
 */
export const handVxlan = handBuiltVariant(
  'hand-built vxlan',
  (families) => UNDERLAY_MTU - Math.max(...families.map((f) => VXLAN_OVERHEAD[f])),
  async (lab) => {
    for (const node of lab.nodes) {
      const peers = lab.nodes.filter((p) => p !== node);
      for (const f of lab.families) {
        const dev = HAND_VXLAN_DEVICE[f];
        const own = handSubnet(f, node.index);
        await ipBatch(node.ns, [
          `link add ${dev} type vxlan id ${VXLAN_VNI} local ${peerIP(node, f)} dev eth0 dstport ${VXLAN_PORT} nolearning`,
          `link set ${dev} address ${vtepMac(f, node.index)} mtu ${UNDERLAY_MTU - VXLAN_OVERHEAD[f]} up`,
          `addr add ${own.ip}/${own.ip.bits} dev ${dev}${f === 6 ? ' nodad' : ''}`,
          ...peers.map((p) => `neigh add ${handSubnet(f, p.index).ip} lladdr ${vtepMac(f, p.index)} dev ${dev} nud permanent`),
        ]);
        await runCommand(['bridge', '-n', node.ns, '-batch', '-'], {
          input: peers.map((p) => `fdb append ${vtepMac(f, p.index)} dev ${dev} dst ${peerIP(p, f)}`).join('\n') + '\n',
        });
        await ipBatch(node.ns, peers.map((p) => `route add ${handSubnet(f, p.index)} via ${handSubnet(f, p.index).ip} dev ${dev} onlink`));
      }
    }
  },
);

/**
 * The variants of a run on `families` (the labs' families). `netConf` is the
 * subject's; by default the lab's for the backend.
 */
export function benchPlan(backend: BackendType, netConf?: Record<string, unknown>, topology: Topology = 'flat', families: Family[] = [4]): BenchPlan {
  const weft = (b: BackendType, options?: Record<string, unknown>): Record<string, unknown> => labNetConf(b, families, options);
  const subject = weftVariant(`weft ${backend}`, netConf ?? weft(backend));
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
        : { subject, baselines: [handVxlan, weftVariant('weft host-gw', weft('host-gw'))], notes: [] };
    case 'udp':
      // Userspace encap against the kernel's, and against its own simplest mode.
      return { subject, baselines: [handVxlan, weftVariant('weft udp (Mode simple)', weft('udp', { Mode: 'simple' }))], notes: [] };
    default:
      throw new WeftError(`no benchmark plan for backend "${String(backend)}"`, 'use host-gw, vxlan, udp or bgp');
  }
}
