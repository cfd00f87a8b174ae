// Names and addresses of a lab's namespaces. Pure: no I/O, unit-tested.
//
// The underlay namespace `wl-<lab>-ul` is the lab's router: it holds one
// bridge per L2 segment, the segment's gateway address on that bridge, and
// forwards between segments. Segment 0 always exists; `routed` adds segment 1;
// the "outside" segment (203.0.113.0/24, for hosts outside the cluster) is
// created on first use. Nodes use .11, .12, ... of their segment; other
// underlay hosts use .100 upwards.
import { Cidr, IP } from '../core/cidr.js';
import { WeftError } from '../errors.js';

export const TOPOLOGIES = ['flat', 'routed'] as const;
export type Topology = (typeof TOPOLOGIES)[number];

export interface Segment {
  index: number;
  /** Bridge name inside the underlay namespace. */
  bridge: string;
  cidr: Cidr;
  /** The underlay namespace's address on this segment: the nodes' default gateway. */
  gateway: IP;
}

const SEGMENT_CIDRS = ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24'] as const;
/** The segment for hosts outside the cluster (see addUnderlayHost). */
export const OUTSIDE_SEGMENT = 2;

export function segment(index: number): Segment {
  const text = SEGMENT_CIDRS[index];
  if (!text) throw new Error(`no underlay segment ${index}`);
  const cidr = Cidr.parse(text);
  return { index, bridge: `br${index}`, cidr, gateway: cidr.ip.add(1) };
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
  return seg.cidr.ip.add(10 + index);
}

export function hostAddress(seg: Segment, ordinal: number): IP {
  if (ordinal < 0 || ordinal > 150) throw new Error(`underlay host ordinal ${ordinal} out of range`);
  return seg.cidr.ip.add(100 + ordinal);
}
