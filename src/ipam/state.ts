// What weft's IPAM keeps per node and network: the shape of the store's
// state.json, shared by the pure allocator and GC and by the store that reads
// and writes it. Addresses are kept as text (the JSON form); the allocator
// parses them with src/core/cidr.ts.
import type { Family } from '../core/cidr.js';

export const STATE_VERSION = 1;

/** The pod an address belongs to, as far as the plugin was told (CNI_ARGS K8S_POD_*). */
export interface PodRef {
  namespace: string;
  name: string;
  uid?: string;
}

/** One address handed to one interface of one container. */
export interface Allocation {
  address: string;
  family: Family;
  containerId: string;
  ifname: string;
  /** The network namespace path the runtime gave (CNI_NETNS); empty when it gave none. */
  netns: string;
  pod?: PodRef;
  /** Set when the pod pinned its MAC (weft.io/mac). */
  mac?: string;
  /** When it was handed out (ISO time). */
  since: string;
  /** Requested by the pod (weft.io/ip or a StatefulSet pool): kept as a reservation when the pod goes. */
  pinned: boolean;
  /** A pinned address of another node's subnet (inside the cluster Network), lent to this node while its pod runs here. */
  borrowed?: boolean;
}

/** A pinned address held for a pod that is not running here (between a delete and its recreation). */
export interface Reservation {
  address: string;
  family: Family;
  pod: PodRef;
  mac?: string;
  since: string;
}

/** An allocation the last reconcile freed, and why. */
export interface Freed {
  address: string;
  containerId: string;
  pod?: PodRef;
  reason: string;
}

export interface ReconcileOutcome {
  at: string;
  freed: Freed[];
  /** Set when the reconcile could not finish (one line). */
  error?: string;
}

export interface IpamState {
  version: typeof STATE_VERSION;
  allocations: Allocation[];
  reservations: Reservation[];
  /** Addresses of this node's subnet that another node holds for a pinned pod (published there as a /32 or /128). */
  borrowedOut: string[];
  /** Per range (its CIDR text): the address handed out last, where the next search starts. */
  lastPosition: Record<string, string>;
  lastReconcile?: ReconcileOutcome;
}

export function emptyState(): IpamState {
  return { version: STATE_VERSION, allocations: [], reservations: [], borrowedOut: [], lastPosition: {} };
}
