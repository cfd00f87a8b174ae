// Building a lab's topology (names and addresses come from topology.ts): the
// underlay namespace as the router, one bridge per segment carrying the
// segment's gateway, and node and host namespaces plugged into a segment with
// eth0 and a default route through that gateway, in each address family the
// lab runs. Each piece is recorded in the lab's state before it is built, so
// teardown finds a half-built one.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Family } from '../core/cidr.js';
import { ipBatch, runCommand } from './command.js';
import { labFamilies, type LabHost, type LabNode, type LabState } from './state.js';
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

  private get families(): Family[] {
    return labFamilies(this.state);
  }

  /** `ip` (the first family's) and `ipv6` (when the lab runs IPv6) from the address `at` gives per family. */
  private addresses(at: (family: Family) => string): { ip: string; ipv6?: string } {
    const [first] = this.families;
    return { ip: at(first!), ...(this.families.includes(6) ? { ipv6: at(6) } : {}) };
  }

  /** The router namespace, forwarding between segments, with the segments the topology starts with. */
  async create(): Promise<void> {
    await runCommand(['ip', 'netns', 'add', this.ns]);
    await ipBatch(this.ns, ['link set lo up']);
    await setForwarding(this.ns, this.families);
    await this.ensureSegment(0);
    if (this.state.topology === 'routed') await this.ensureSegment(1);
  }

  /** A node namespace (forwarding on) on `segmentIndex`, by default the topology's choice, and its lab dir. */
  async addNode(segmentIndex?: number): Promise<LabNode> {
    const index = Math.max(0, ...this.state.nodes.map((n) => n.index)) + 1;
    const segIndex = segmentIndex ?? nodeSegment(this.state.topology, index);
    await this.ensureSegment(segIndex);
    const name = nodeShortName(index);
    const { ip, ipv6 } = this.addresses((f) => nodeAddress(segment(segIndex, f), index).toString());
    const node: LabNode = { name, ns: labNs(this.state.name, name), index, segment: segIndex, underlayIP: ip, ...(ipv6 ? { underlayIPv6: ipv6 } : {}) };
    this.state.nodes.push(node);
    await this.save();
    await mkdir(join(this.state.dir, node.name), { recursive: true });
    await this.wire(node.ns, name, segIndex, { ip, ipv6 }, true);
    return node;
  }

  /** A namespace on segment `segIndex` that is not a node, named `short`. */
  async addHost(short: string, segIndex: number): Promise<LabHost> {
    if (!/^[a-z][a-z0-9]{0,9}$/.test(short) || short === 'ul' || /^n\d+$/.test(short)) {
      throw new Error(`bad underlay host name "${short}" (1-10 lowercase letters/digits, not "ul" or "n<digits>")`);
    }
    await this.ensureSegment(segIndex);
    const ordinal = this.state.hosts.filter((h) => h.segment === segIndex).length;
    const { ip, ipv6 } = this.addresses((f) => hostAddress(segment(segIndex, f), ordinal).toString());
    const host: LabHost = { name: short, ns: labNs(this.state.name, short), segment: segIndex, ip, ...(ipv6 ? { ipv6 } : {}) };
    this.state.hosts.push(host);
    await this.save();
    await this.wire(host.ns, `h-${short}`, segIndex, { ip, ipv6 }, false);
    return host;
  }

  /** A new namespace with `eth0` on the segment's bridge, the segment gateway as default route in each family. */
  private async wire(ns: string, ulIfName: string, segIndex: number, addrs: { ip: string; ipv6?: string }, forward: boolean): Promise<void> {
    await runCommand(['ip', 'netns', 'add', ns]);
    await runCommand(['ip', 'link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', ulIfName, 'netns', this.ns]);
    await ipBatch(this.ns, [`link set ${ulIfName} master ${segment(segIndex).bridge} up`]);
    const byFamily = (f: Family): string => (f === 6 ? addrs.ipv6! : addrs.ip);
    await ipBatch(ns, [
      'link set lo up',
      'link set eth0 up',
      ...this.families.flatMap((f) => {
        const seg = segment(segIndex, f);
        return [`addr add ${byFamily(f)}/${seg.cidr.prefixLen} dev eth0${NODAD[f]}`, `route add ${DEFAULT_ROUTE[f]} via ${seg.gateway} dev eth0`];
      }),
    ]);
    if (forward) await setForwarding(ns, this.families);
  }

  private async ensureSegment(index: number): Promise<void> {
    if (this.state.segments.includes(index)) return;
    if (index < 0 || index > OUTSIDE_SEGMENT) throw new Error(`no underlay segment ${index} (0..${OUTSIDE_SEGMENT})`);
    const { bridge } = segment(index);
    await ipBatch(this.ns, [
      `link add ${bridge} type bridge`,
      `link set ${bridge} up`,
      ...this.families.map((f) => {
        const seg = segment(index, f);
        return `addr add ${seg.gateway}/${seg.cidr.prefixLen} dev ${bridge}${NODAD[f]}`;
      }),
    ]);
    this.state.segments.push(index);
    await this.save();
  }
}

/** `default` is IPv4 to `ip`; an IPv6 default route is named by its prefix. */
const DEFAULT_ROUTE: Record<Family, string> = { 4: 'default', 6: '::/0' };
/** Lab addresses are unique by construction: no duplicate address detection, which would hold them back for a second or more. */
const NODAD: Record<Family, string> = { 4: '', 6: ' nodad' };
const FORWARDING_SYSCTL: Record<Family, string> = { 4: '/proc/sys/net/ipv4/ip_forward', 6: '/proc/sys/net/ipv6/conf/all/forwarding' };

async function setForwarding(ns: string, families: readonly Family[]): Promise<void> {
  // /proc/sys/net is per network namespace; sh rather than sysctl, which minimal systems lack.
  const script = families.map((f) => `echo 1 > ${FORWARDING_SYSCTL[f]}`).join(' && ');
  await runCommand(['sh', '-c', script], { netns: ns });
}
