// Names and addresses of a lab's namespaces. Pure: no I/O, unit-tested.
//
// The underlay namespace `wl-<lab>-ul` is the lab's router: it holds one
// bridge per L2 segment, the segment's gateway address on that bridge, and
// forwards between segments. Segment 0 always exists; `routed` adds segment 1;
// the "outside" segment (203.0.113.0/24, for hosts outside the cluster) is
// created on first use. Nodes use .11, .12, ... of their segment; other
// underlay hosts use .100 upwards.
//
// A lab runs IPv4, IPv6 or both on its underlay. Each segment has an IPv6
// /64 inside 2001:db8::/48 (2001:db8:0:<segment>::/64) whose host numbers
// read like the IPv4 ones: 192.0.2.11 is 2001:db8::11, 198.51.100.1 is
// 2001:db8:0:1::1.
import { Cidr, IP, type Family } from '../core/cidr.js';
import { WeftError } from '../errors.js';

export const TOPOLOGIES = ['flat', 'routed'] as const;
export type Topology = (typeof TOPOLOGIES)[number];

/** The address families a lab runs, named as on the command line. */
export const IP_FAMILY_NAMES = ['ipv4', 'ipv6', 'dual'] as const;

/**
 * `--ip-family`: "ipv4" or "4", "ipv6" or "6", "dual" (both). Families in
 * the lab's order: IPv4 first, so a dual-stack lab's primary addresses
 * (etcd's, `ip` fields) stay IPv4 as in a single-stack one.
 */
export function parseIpFamily(text: string, flag = '--ip-family'): Family[] {
  switch (text) {
    case 'ipv4':
    case '4':
      return [4];
    case 'ipv6':
    case '6':
      return [6];
    case 'dual':
      return [4, 6];
    default:
      throw new WeftError(`${flag} "${text}" is not an address family`, `use ${IP_FAMILY_NAMES.join(', ')} (or 4, 6)`);
  }
}

/** The --ip-family name of a family list (the inverse of parseIpFamily). */
export function ipFamilyName(families: readonly Family[]): (typeof IP_FAMILY_NAMES)[number] {
  return families.length > 1 ? 'dual' : families[0] === 6 ? 'ipv6' : 'ipv4';
}

export interface Segment {
  index: number;
  /** Bridge name inside the underlay namespace. */
  bridge: string;
  cidr: Cidr;
  /** The underlay namespace's address on this segment: the nodes' default gateway. */
  gateway: IP;
}

const SEGMENT_CIDRS = ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24'] as const;
/** Every segment's IPv6 /64 lies in this /48: 2001:db8:0:<segment>::/64. */
const IPV6_UNDERLAY = Cidr.parse('2001:db8::/48');
/** The segment for hosts outside the cluster (see addUnderlayHost). */
export const OUTSIDE_SEGMENT = 2;

/** Segment `index` in one address family (the same bridge in both). */
export function segment(index: number, family: Family = 4): Segment {
  const text = SEGMENT_CIDRS[index];
  if (!text) throw new Error(`no underlay segment ${index}`);
  const cidr = family === 4 ? Cidr.parse(text) : IPV6_UNDERLAY.subnet(64, BigInt(index));
  return { index, bridge: `br${index}`, cidr, gateway: hostOf(cidr, 1) };
}

/**
 * Host number `n` of a segment: added as is in IPv4, read as hex digits in
 * IPv6 so the address shows the same digits (11 -> ::11).
 */
function hostOf(cidr: Cidr, n: number): IP {
  return cidr.ip.add(cidr.family === 4 ? BigInt(n) : BigInt(`0x${n}`));
}

/** Lab names become part of namespace names, so they stay short and dash-free. */
export function checkLabName(name: string): string {
  if (!/^[a-z][a-z0-9]{0,11}$/.test(name)) {
    throw new WeftError(`bad lab name "${name}"`, 'use 1-12 lowercase letters and digits, starting with a letter');
  }
  return name;
}

/** Every namespace of lab `name` starts with this. */
export function labNsPrefix(name: string): string {
  return `wl-${name}-`;
}

export function labNs(lab: string, short: string): string {
  return `${labNsPrefix(lab)}${short}`;
}

export function underlayNs(lab: string): string {
  return labNs(lab, 'ul');
}

/** The lab a `wl-<lab>-...` namespace belongs to, if it is one. */
export function labOfNs(ns: string): string | undefined {
  return /^wl-([a-z][a-z0-9]{0,11})-/.exec(ns)?.[1];
}

export function nodeShortName(index: number): string {
  return `n${index}`;
}

export function podShortName(node: string, k: number): string {
  return `${node}-p${k}`;
}

/** `k` of a pod named by podShortName (0 for any other name). */
export function podOrdinal(podName: string): number {
  return Number(/-p(\d+)$/.exec(podName)?.[1] ?? 0);
}

/** flat: every node on segment 0; routed: nodes alternate between segments 0 and 1. */
export function nodeSegment(topology: Topology, index: number): number {
  return topology === 'routed' ? (index - 1) % 2 : 0;
}

export function nodeAddress(seg: Segment, index: number): IP {
  if (index < 1 || index > 89) throw new Error(`node index ${index} out of range 1..89`);
  return hostOf(seg.cidr, 10 + index);
}

export function hostAddress(seg: Segment, ordinal: number): IP {
  if (ordinal < 0 || ordinal > 150) throw new Error(`underlay host ordinal ${ordinal} out of range`);
  return hostOf(seg.cidr, 100 + ordinal);
}
