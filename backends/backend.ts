// The contract between the agent and a backend. A backend is mostly a pure
// function from (own lease, peer leases) to desired kernel state; side effects
// it cannot express as state (BIRD, the native UDP loop) sit behind start/sync/stop.
import type { Logger } from 'pino';
import type { NetConf } from '../src/config/netconf.js';
import type { DesiredState } from '../src/dataplane/state.js';
import type { Cidr, Family, IP } from '../src/core/cidr.js';
import type { Lease } from '../src/subnet/lease.js';
import type { MetricFamily } from '../src/agent/metrics.js';

/** The node's underlay interface, as the agent found it. */
export interface ExternalInterface {
  name: string;
  /** Address used as this node's PublicIP source on the underlay. */
  ip: IP;
  /** Published address (--public-ip), usually equal to ip. */
  publicIP: IP;
  mtu: number;
  /** Directly connected prefixes on the interface (for on-link checks). */
  connected: Cidr[];
  mac?: string;
  /** The same interface's IPv6 side, found when the net-conf enables IPv6 (dual-stack). */
  ipv6?: { ip: IP; publicIP: IP; connected: Cidr[] };
}

/**
 * The interface as seen by one family: the primary family is `ext` itself;
 * IPv6 on a dual-stack node has the IPv6 addresses in the primary places.
 * Paired with leaseHalf(), so per-family backend code is written once.
 */
export function extHalf(ext: ExternalInterface, family: Family): ExternalInterface | undefined {
  if (ext.ip.family === family) return ext;
  if (family !== 6 || !ext.ipv6) return undefined;
  const { ipv6, ...rest } = ext;
  return { ...rest, ...ipv6 };
}

export interface BackendContext {
  config: NetConf;
  ext: ExternalInterface;
  logger: Logger;
  nodeName: string;
  /** Per-agent runtime directory (sockets, generated configs). */
  runDir: string;
  /** bgp: drive the BIRD behind this control socket instead of running one (--bird-socket). */
  birdSocket?: string;
}

export interface Backend {
  readonly type: string;
  /** MTU pods should use (written as FLANNEL_MTU). */
  readonly mtu: number;
  /** BackendData published in this node's lease. */
  readonly backendData: unknown;
  /** BackendV6Data published with the lease's IPv6 half (dual-stack), if the backend has any. */
  readonly backendV6Data?: unknown;
  /** UDP port of the backend's tunnel, if any: the agent opens it to current peers' PublicIPs only. */
  readonly tunnelPort?: number;
  /**
   * Pure: what the kernel should hold for this lease set. Peers the backend
   * cannot serve are left out and reported once through the logger.
   */
  desired(own: Lease, peers: readonly Lease[]): DesiredState;
  /** Side effects not expressible as state, after each reconcile (optional). */
  sync?(own: Lease, peers: readonly Lease[]): Promise<void>;
  /** Why the backend is not ready yet (e.g. BGP sessions still connecting), undefined when it is (optional). */
  notReadyReason?(): string | undefined;
  /** Backend-specific Prometheus families (the udp loop's counters, BGP sessions), read at scrape time (optional). */
  metrics?(): MetricFamily[];
  /** Stop helpers; `teardown` also removes what the backend owns from the kernel. */
  stop(opts: { teardown: boolean }): Promise<void>;
}

export type BackendFactory = (ctx: BackendContext) => Promise<Backend>;

/** The smallest MTU a tunnel device may have per family it carries: the kernel's floor for IPv4, IPv6's minimum link MTU. */
export const MIN_DEVICE_MTU: Record<Family, number> = { 4: 68, 6: 1280 };

/**
 * The interface's side of each family a tunnel runs over: the primary one,
 * and the IPv6 one when the net-conf enables IPv6 and the interface has an
 * IPv6 address (dual-stack).
 */
export function extSides(ext: ExternalInterface, ipv6Enabled: boolean): ExternalInterface[] {
  const v6 = ipv6Enabled && ext.ip.family === 4 ? extHalf(ext, 6) : undefined;
  return v6 ? [ext, v6] : [ext];
}
