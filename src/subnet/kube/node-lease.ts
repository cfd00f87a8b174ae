// A node object as a lease: the subnets are spec.podCIDRs (one per family;
// spec.podCIDR on servers without the list), the rest is published in
// annotations, an IPv6 half under flannel's IPv6 names (public-ipv6,
// backend-v6-data). Everything on a node object is untrusted (anyone who may
// patch nodes can write it), so it goes through the etcd manager's validator.
import type { NetConf } from '../../config/netconf.js';
import { Cidr } from '../../core/cidr.js';
import { leaseKeyName } from '../etcd/layout.js';
import { parseLeaseEntry } from '../etcd/lease-value.js';
import type { Lease, LeaseAttrs, LeaseValue } from '../lease.js';

export const ANNOTATION_PREFIX = 'weft.io/';
/** flannel's names, read (never written) so nodes can be migrated from flannel. */
export const FLANNEL_ANNOTATION_PREFIX = 'flannel.alpha.coreos.com/';

export const Annotation = {
  publicIP: `${ANNOTATION_PREFIX}public-ip`,
  publicIPv6: `${ANNOTATION_PREFIX}public-ipv6`,
  backendType: `${ANNOTATION_PREFIX}backend-type`,
  backendData: `${ANNOTATION_PREFIX}backend-data`,
  backendV6Data: `${ANNOTATION_PREFIX}backend-v6-data`,
  /** The lease's BorrowedIPs as a JSON list ("[\"10.244.3.17/32\"]"), both families in one list; weft's own (flannel has none). */
  borrowedIPs: `${ANNOTATION_PREFIX}borrowed-ips`,
  /** Marks nodes whose annotations weft manages. */
  managed: `${ANNOTATION_PREFIX}kube-subnet-manager`,
} as const;

const MAX_ANNOTATION_BYTES = 8 * 1024;

/** The parts of a node object weft reads (plain JSON from a watch, or the client's V1Node). */
export interface NodeObject {
  metadata?: { name?: string; annotations?: Record<string, string> | null; resourceVersion?: string };
  spec?: { podCIDR?: string; podCIDRs?: string[] } | null;
}

/**
 * A node's pod ranges, at most one per family: `subnet` is the primary one
 * (the IPv4 range, or the only range of an IPv6-only node), `ipv6Subnet` the
 * IPv6 range of a dual-stack node.
 */
export interface PodCidrs {
  subnet?: Cidr;
  ipv6Subnet?: Cidr;
}

/**
 * - `lease`: the node's valid lease
 * - `none`: the node has no lease yet (no podCIDR, or weft has not published) — not an error
 * - `invalid`: something is there but unusable; `reason` says what
 */
export type NodeLease = { kind: 'lease'; lease: Lease; warning?: string } | { kind: 'none' } | { kind: 'invalid'; reason: string };

/** spec.podCIDRs, else [spec.podCIDR], as the API server holds them (unchecked). */
function podCidrList(node: NodeObject): { field: string; list: unknown[] } {
  const list = node.spec?.podCIDRs;
  if (list !== undefined && list !== null && (!Array.isArray(list) || list.length > 0)) {
    if (!Array.isArray(list)) throw new Error('spec.podCIDRs is not a list');
    return { field: 'spec.podCIDRs', list };
  }
  const one = node.spec?.podCIDR;
  return { field: 'spec.podCIDR', list: one === undefined || one === null || one === '' ? [] : [one] };
}

/**
 * The node's pod ranges (none before kube-controller-manager assigns them);
 * throws naming what is wrong. A lone IPv6 range is an IPv6-only node's primary one.
 */
export function podCidrsOf(node: NodeObject): PodCidrs {
  const { field, list } = podCidrList(node);
  if (list.length > 2) throw new Error(`${field} has ${list.length} ranges (at most one IPv4 and one IPv6)`);
  const found: PodCidrs = {};
  for (const text of list) {
    if (typeof text !== 'string') throw new Error(`${field} has an entry that is not a string`);
    let cidr: Cidr;
    try {
      cidr = Cidr.parse(text);
    } catch (err) {
      throw new Error(`${field} ${(err as Error).message}`);
    }
    const slot = cidr.family === 4 ? 'subnet' : 'ipv6Subnet';
    if (found[slot]) throw new Error(`${field} has two IPv${cidr.family} ranges (${found[slot]}, ${cidr})`);
    found[slot] = cidr;
  }
  return found.subnet ? found : { subnet: found.ipv6Subnet };
}

/** The podCIDRs' spelling in messages: "10.244.1.0/24,fd00:10:244:1::/64". */
export function podCidrsText(cidrs: PodCidrs): string {
  return [cidrs.subnet, cidrs.ipv6Subnet].filter((c) => c !== undefined).join(',');
}

/** A JSON annotation's value, or why it is not JSON. */
function parseJsonAnnotation(name: string, text: string | undefined): { value?: unknown } | string {
  if (text === undefined || text === '') return {};
  try {
    return { value: JSON.parse(text) };
  } catch {
    return `annotation ${name} is not JSON`;
  }
}

export function nodeLease(node: NodeObject, net: NetConf): NodeLease {
  const name = node.metadata?.name ?? '';
  const ann = node.metadata?.annotations ?? {};
  const prefix = [ANNOTATION_PREFIX, FLANNEL_ANNOTATION_PREFIX].find((p) => typeof ann[`${p}backend-type`] === 'string');
  let cidrs: PodCidrs;
  try {
    cidrs = podCidrsOf(node);
  } catch (err) {
    return prefix ? { kind: 'invalid', reason: (err as Error).message } : { kind: 'none' };
  }
  const subnet = cidrs.subnet;
  if (!subnet || !prefix) return { kind: 'none' };

  const read = (key: string): string | undefined => {
    const v = ann[`${prefix}${key}`];
    return typeof v === 'string' ? v : undefined;
  };
  for (const key of ['public-ip', 'public-ipv6', 'backend-type', 'backend-data', 'backend-v6-data', 'borrowed-ips']) {
    const v = read(key);
    if (v !== undefined && Buffer.byteLength(v) > MAX_ANNOTATION_BYTES) {
      return { kind: 'invalid', reason: `annotation ${prefix}${key} is larger than ${MAX_ANNOTATION_BYTES} bytes` };
    }
  }
  // An IPv6-only node publishes its address and data under the IPv6 names, as flannel does.
  const only6 = subnet.family === 6;
  const [ipKey, dataKey] = only6 ? ['public-ipv6', 'backend-v6-data'] : ['public-ip', 'backend-data'];
  const value: LeaseValue = { PublicIP: read(ipKey) as string, BackendType: read('backend-type') as string, NodeName: name };
  const data = parseJsonAnnotation(`${prefix}${dataKey}`, read(dataKey));
  if (typeof data === 'string') return { kind: 'invalid', reason: data };
  value.BackendData = data.value;
  // Read under weft's name only. Text that is not JSON goes on as text, so the lease parser ignores it with a warning and keeps the lease.
  const borrowedText = ann[Annotation.borrowedIPs];
  if (typeof borrowedText === 'string' && borrowedText !== '') {
    const borrowed = parseJsonAnnotation(Annotation.borrowedIPs, borrowedText);
    value.BorrowedIPs = (typeof borrowed === 'string' ? borrowedText : borrowed.value) as string[];
  }

  // The IPv6 half is the node's word (its public-ipv6 annotation) on the controller's IPv6 range.
  const publicIPv6 = only6 ? undefined : read('public-ipv6');
  let ipv6Subnet: Cidr | undefined;
  let warning: string | undefined;
  if (publicIPv6 !== undefined) {
    const v6data = parseJsonAnnotation(`${prefix}backend-v6-data`, read('backend-v6-data'));
    if (typeof v6data === 'string') return { kind: 'invalid', reason: v6data };
    ipv6Subnet = cidrs.ipv6Subnet;
    if (ipv6Subnet) Object.assign(value, { PublicIPv6: publicIPv6, BackendV6Data: v6data.value });
    else warning = `IPv6 half dropped: the node publishes ${prefix}public-ipv6 but spec.podCIDRs has no IPv6 range`;
  }
  // podCIDR lengths come from kube-controller-manager, not from SubnetLen.
  const lengths: NetConf = { ...net, subnetLen: subnet.prefixLen };
  if (net.ipv6 && ipv6Subnet) lengths.ipv6 = { ...net.ipv6, subnetLen: ipv6Subnet.prefixLen };
  const entry = parseLeaseEntry(leaseKeyName(subnet, ipv6Subnet), JSON.stringify(value), lengths);
  if (!entry.ok) return { kind: 'invalid', reason: entry.reason };
  warning ??= entry.warning;
  return { kind: 'lease', lease: entry.lease, ...(warning ? { warning } : {}) };
}

/**
 * The annotations that publish `attrs`; values are strings, as Kubernetes
 * wants them. Without an IPv6 half its annotations are null: a merge patch
 * removes what an earlier dual-stack run left.
 */
export function leaseAnnotations(attrs: LeaseAttrs): Record<string, string | null> {
  if (attrs.publicIP.family === 6) {
    // IPv6-only: flannel's IPv6 names carry the primary address and data; the IPv4 ones go.
    return {
      [Annotation.publicIP]: null,
      [Annotation.publicIPv6]: attrs.publicIP.toString(),
      [Annotation.backendType]: attrs.backendType,
      [Annotation.backendData]: null,
      [Annotation.backendV6Data]: JSON.stringify(attrs.backendData ?? null),
      [Annotation.borrowedIPs]: borrowedAnnotation(attrs),
      [Annotation.managed]: 'true',
    };
  }
  const v6 = attrs.publicIPv6;
  return {
    [Annotation.publicIP]: attrs.publicIP.toString(),
    [Annotation.publicIPv6]: v6 ? v6.toString() : null,
    [Annotation.backendType]: attrs.backendType,
    [Annotation.backendData]: JSON.stringify(attrs.backendData ?? null),
    [Annotation.backendV6Data]: v6 ? JSON.stringify(attrs.backendV6Data ?? null) : null,
    [Annotation.borrowedIPs]: borrowedAnnotation(attrs),
    [Annotation.managed]: 'true',
  };
}

/** The borrowed-ips annotation's value; null (removed by a merge patch) when the node borrows nothing. */
function borrowedAnnotation(attrs: LeaseAttrs): string | null {
  const list = attrs.borrowedIPs ?? [];
  return list.length > 0 ? JSON.stringify(list.map(String)) : null;
}
