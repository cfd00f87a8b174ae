import type { NetConf } from '../config/netconf.js';
import type { Cidr, Family, IP } from '../core/cidr.js';

/** What a node publishes about itself: flannel's lease value, parsed. */
export interface LeaseAttrs {
  publicIP: IP;
  /** The address peers reach the IPv6 half of a dual-stack lease at (flannel's PublicIPv6). */
  publicIPv6?: IP;
  backendType: string;
  /** Backend-specific JSON (vxlan: {VNI, VtepMAC}); opaque to the control plane. */
  backendData: unknown;
  /** The IPv6 half's backend JSON (flannel's BackendV6Data); opaque like backendData. */
  backendV6Data?: unknown;
  /** Optional node name, carried for status output and BGP reflector lists. */
  nodeName?: string;
  /**
   * Addresses of pinned pods running on this node outside its own subnets,
   * as host routes (/32, /128): every peer routes them to this node. Set only
   * when non-empty; both families, each used with its own half of the lease.
   */
  borrowedIPs?: Cidr[];
}

/** One node's claim on a pod subnet. */
export interface Lease {
  subnet: Cidr;
  /**
   * The IPv6 subnet of a flannel dual-stack lease (the key's part after "&").
   * Set only together with `attrs.publicIPv6`, so a lease either has a usable
   * IPv6 half or none. Backends reach it through leaseHalf(lease, 6).
   */
  ipv6Subnet?: Cidr;
  attrs: LeaseAttrs;
  /** Absolute expiry in ms since epoch. Set on this node's own lease (undefined there means a reservation); peers' leases from a watch leave it unset. */
  expiresAt?: number;
}

export type LeaseEvent =
  | { type: 'added'; lease: Lease }
  | { type: 'removed'; lease: Lease };

/** The wire form stored at <prefix>/subnets/<ip>-<len> (flannel's field names, in flannel's order). */
export interface LeaseValue {
  PublicIP: string;
  /** flannel writes null when the lease has no IPv6 half. */
  PublicIPv6?: string | null;
  BackendType: string;
  BackendData?: unknown;
  BackendV6Data?: unknown;
  NodeName?: string;
  /** Host routes ("10.244.3.17/32") this node holds outside its own subnets; see LeaseAttrs.borrowedIPs. */
  BorrowedIPs?: string[];
}

function sameIP(a: IP | undefined, b: IP | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.equals(b);
}

/** Borrowed addresses as a set: the order they are published in is not a change. */
function sameBorrowed(a: readonly Cidr[] | undefined, b: readonly Cidr[] | undefined): boolean {
  const keys = (l: readonly Cidr[] | undefined): string => (l ?? []).map(String).sort().join(',');
  return keys(a) === keys(b);
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

export function sameLeaseAttrs(a: LeaseAttrs, b: LeaseAttrs): boolean {
  return (
    a.publicIP.equals(b.publicIP) &&
    sameIP(a.publicIPv6, b.publicIPv6) &&
    a.backendType === b.backendType &&
    a.nodeName === b.nodeName &&
    sameJson(a.backendData, b.backendData) &&
    sameJson(a.backendV6Data, b.backendV6Data) &&
    sameBorrowed(a.borrowedIPs, b.borrowedIPs)
  );
}

/** Whether two leases name the same subnets (both families). */
export function sameSubnets(a: Lease, b: Lease): boolean {
  const sameV6 = a.ipv6Subnet && b.ipv6Subnet ? a.ipv6Subnet.equals(b.ipv6Subnet) : a.ipv6Subnet === b.ipv6Subnet;
  return a.subnet.equals(b.subnet) && sameV6;
}

/** attrs with only the borrowed addresses of `family` (the field left out when none are). */
function withBorrowedOf(attrs: LeaseAttrs, family: Family): LeaseAttrs {
  const { borrowedIPs, ...rest } = attrs;
  const kept = borrowedIPs?.filter((c) => c.family === family);
  return kept && kept.length > 0 ? { ...rest, borrowedIPs: kept } : rest;
}

/** attrs without their IPv6 half (its address, data and borrowed addresses; an IPv6-only lease keeps its own): what a lease without an IPv6 subnet publishes. */
export function withoutIPv6(attrs: LeaseAttrs): LeaseAttrs {
  const { publicIPv6: _p, backendV6Data: _d, ...rest } = attrs;
  return withBorrowedOf(rest, rest.publicIP.family);
}

/**
 * One address family's half of a lease, shaped as a single-family lease:
 * the primary half is the lease itself (without its IPv6 fields); the IPv6
 * half of a dual-stack lease has the IPv6 subnet, PublicIPv6 and
 * BackendV6Data in the primary places. Per-family code (every backend's
 * desired state, the firewall) is written once against this shape and run
 * per family. Undefined when the lease has no half of that family.
 */
export function leaseHalf(lease: Lease, family: Family): Lease | undefined {
  if (lease.subnet.family === family) {
    if (!lease.ipv6Subnet) return lease;
    return { subnet: lease.subnet, attrs: withoutIPv6(lease.attrs), expiresAt: lease.expiresAt };
  }
  if (family !== 6 || !lease.ipv6Subnet || !lease.attrs.publicIPv6) return undefined;
  const { publicIPv6, backendV6Data, ...attrs } = lease.attrs;
  return { subnet: lease.ipv6Subnet, attrs: withBorrowedOf({ ...attrs, publicIP: publicIPv6, backendData: backendV6Data ?? null }, 6), expiresAt: lease.expiresAt };
}

/** The families a lease has a half in, primary first. */
export function leaseFamilies(lease: Lease): Family[] {
  return lease.ipv6Subnet && lease.subnet.family === 4 ? [4, 6] : [lease.subnet.family];
}

/** Each lease's half of `family`, leaving out the leases without one. */
export function leaseHalves(leases: readonly Lease[], family: Family): Lease[] {
  // A plain loop: this runs over every peer on every lease event.
  const out: Lease[] = [];
  for (const l of leases) {
    const half = leaseHalf(l, family);
    if (half) out.push(half);
  }
  return out;
}

/**
 * Why `ip` cannot be a borrowed address of `lease`, or undefined: it must be
 * a host route (/32, /128) inside the cluster's Network of its family, of a
 * family the lease has a half in (peers route it via that half's address),
 * and outside the lease's own subnets (those are routed to it anyway).
 */
export function borrowedIPProblem(ip: Cidr, lease: Lease, net: NetConf): string | undefined {
  if (ip.prefixLen !== ip.ip.bits) return `not a host route (/${ip.ip.bits})`;
  const network = ip.family === net.network.family ? net.network : ip.family === 6 ? net.ipv6?.network : undefined;
  if (!network) return `IPv${ip.family}, and the cluster has no IPv${ip.family} Network`;
  if (!network.covers(ip)) return `outside ${ip.family === net.network.family ? '' : 'IPv6'}Network ${network}`;
  const own = ip.family === lease.subnet.family ? lease.subnet : lease.ipv6Subnet;
  if (!own) return `IPv${ip.family}, and the lease has no IPv${ip.family} half to route it to`;
  if (own.covers(ip)) return `inside the lease's own subnet ${own}`;
  return undefined;
}
