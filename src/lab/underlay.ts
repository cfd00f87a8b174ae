// Building a lab's topology (names and addresses come from topology.ts): the
// underlay namespace as the router, one bridge per segment carrying the
// segment's gateway, and node and host namespaces plugged into a segment with
// eth0 and a default route through that gateway. Each piece is recorded in
// the lab's state before it is built, so teardown finds a half-built one.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ipBatch, runCommand } from './command.js';
import type { LabHost, LabNode, LabState } from './state.js';
import { OUTSIDE_SEGMENT, hostAddress, labNs, nodeAddress, nodeSegment, nodeShortName, segment, underlayNs } from './topology.js';

export class Underlay {
  constructor(
    private readonly state: LabState,
    /** Records the state; called after every change to it. */
    private readonly save: () => Promise<void>,
  ) {}

  get ns(): string {
    return underlayNs(this.state.name);
  }

  /** The router namespace, forwarding between segments, with the segments the topology starts with. */
  async create(): Promise<void> {
    await runCommand(['ip', 'netns', 'add', this.ns]);
    await ipBatch(this.ns, ['link set lo up']);
    await setForwarding(this.ns);
    await this.ensureSegment(0);
    if (this.state.topology === 'routed') await this.ensureSegment(1);
  }

  /** A node namespace (forwarding on) on `segmentIndex`, by default the topology's choice, and its lab dir. */
  async addNode(segmentIndex?: number): Promise<LabNode> {
    const index = Math.max(0, ...this.state.nodes.map((n) => n.index)) + 1;
    const segIndex = segmentIndex ?? nodeSegment(this.state.topology, index);
    await this.ensureSegment(segIndex);
    const name = nodeShortName(index);
    const node: LabNode = { name, ns: labNs(this.state.name, name), index, segment: segIndex, underlayIP: nodeAddress(segment(segIndex), index).toString() };
    this.state.nodes.push(node);
    await this.save();
    await mkdir(join(this.state.dir, node.name), { recursive: true });
    await this.wire(node.ns, name, segIndex, node.underlayIP, true);
    return node;
  }

  /** A namespace on segment `segIndex` that is not a node, named `short`. */
  async addHost(short: string, segIndex: number): Promise<LabHost> {
    if (!/^[a-z][a-z0-9]{0,9}$/.test(short) || short === 'ul' || /^n\d+$/.test(short)) {
      throw new Error(`bad underlay host name "${short}" (1-10 lowercase letters/digits, not "ul" or "n<digits>")`);
    }
    await this.ensureSegment(segIndex);
    const seg = segment(segIndex);
    const ip = hostAddress(seg, this.state.hosts.filter((h) => h.segment === segIndex).length).toString();
    const host: LabHost = { name: short, ns: labNs(this.state.name, short), segment: segIndex, ip };
    this.state.hosts.push(host);
    await this.save();
    await this.wire(host.ns, `h-${short}`, segIndex, ip, false);
    return host;
  }

  /** A new namespace with `eth0` on the segment's bridge, the segment gateway as default route. */
  private async wire(ns: string, ulIfName: string, segIndex: number, ip: string, forward: boolean): Promise<void> {
    const seg = segment(segIndex);
    await runCommand(['ip', 'netns', 'add', ns]);
    await runCommand(['ip', 'link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', ulIfName, 'netns', this.ns]);
    await ipBatch(this.ns, [`link set ${ulIfName} master ${seg.bridge} up`]);
    await ipBatch(ns, [
      'link set lo up',
      'link set eth0 up',
      `addr add ${ip}/${seg.cidr.prefixLen} dev eth0`,
      `route add default via ${seg.gateway} dev eth0`,
    ]);
    if (forward) await setForwarding(ns);
  }

  private async ensureSegment(index: number): Promise<void> {
    if (this.state.segments.includes(index)) return;
    if (index < 0 || index > OUTSIDE_SEGMENT) throw new Error(`no underlay segment ${index} (0..${OUTSIDE_SEGMENT})`);
    const seg = segment(index);
    await ipBatch(this.ns, [
      `link add ${seg.bridge} type bridge`,
      `link set ${seg.bridge} up`,
      `addr add ${seg.gateway}/${seg.cidr.prefixLen} dev ${seg.bridge}`,
    ]);
    this.state.segments.push(index);
    await this.save();
  }
}

async function setForwarding(ns: string): Promise<void> {
  // /proc/sys/net is per network namespace; sh rather than sysctl, which minimal systems lack.
  await runCommand(['sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward'], { netns: ns });
}
