import type { Cidr, IP } from '../core/cidr.js';

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
}

/** One node's claim on a pod subnet. */
export interface Lease {
  subnet: Cidr;
  /**
   * The IPv6 subnet of a flannel dual-stack lease (the key's part after "&").
   * Set only together with `attrs.publicIPv6`, so a lease either has a usable
   * IPv6 half or none. Carried for later; nothing programs it yet.
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
}

function sameIP(a: IP | undefined, b: IP | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.equals(b);
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
    sameJson(a.backendV6Data, b.backendV6Data)
  );
}
