import type { Cidr, IP } from '../core/cidr.js';

/** What a node publishes about itself: flannel's lease value, parsed. */
export interface LeaseAttrs {
  publicIP: IP;
  backendType: string;
  /** Backend-specific JSON (vxlan: {VNI, VtepMAC}); opaque to the control plane. */
  backendData: unknown;
  /** Optional node name, carried for status output and BGP reflector lists. */
  nodeName?: string;
}

/** One node's claim on a pod subnet. */
export interface Lease {
  subnet: Cidr;
  attrs: LeaseAttrs;
  /** Absolute expiry in ms since epoch. Set on this node's own lease (undefined there means a reservation); peers' leases from a watch leave it unset. */
  expiresAt?: number;
}

export type LeaseEvent =
  | { type: 'added'; lease: Lease }
  | { type: 'removed'; lease: Lease };

/** The wire form stored at <prefix>/subnets/<ip>-<len> (flannel's field names). */
export interface LeaseValue {
  PublicIP: string;
  BackendType: string;
  BackendData?: unknown;
  NodeName?: string;
}

export function sameLeaseAttrs(a: LeaseAttrs, b: LeaseAttrs): boolean {
  return (
    a.publicIP.equals(b.publicIP) &&
    a.backendType === b.backendType &&
    a.nodeName === b.nodeName &&
    JSON.stringify(a.backendData ?? null) === JSON.stringify(b.backendData ?? null)
  );
}
