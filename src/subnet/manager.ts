import type { NetConf } from '../config/netconf.js';
import type { Cidr } from '../core/cidr.js';
import type { Lease, LeaseAttrs, LeaseEvent } from './lease.js';

/**
 * The control plane's whole contract with the agent. Implementations (etcd,
 * Kubernetes) never touch the kernel.
 */
export interface SubnetManager {
  /** The cluster's net-conf (from etcd, the API server or a file). */
  getNetworkConfig(signal?: AbortSignal): Promise<NetConf>;

  /**
   * Obtain this node's lease: reuse one carrying attrs.publicIP, else
   * `prefer` if still free, else a free subnet. Publishes attrs. With an
   * IPv6 range in the net-conf and attrs.publicIPv6 the lease is dual-stack
   * (`ipv6Subnet` set; `preferIPv6` is the IPv6 twin of `prefer`), and a
   * reused lease keeps its IPv4 subnet while gaining or losing the IPv6 half.
   */
  acquireLease(attrs: LeaseAttrs, opts: { prefer?: Cidr; preferIPv6?: Cidr; signal?: AbortSignal }): Promise<Lease>;

  /**
   * Renew (and republish attrs of) this node's lease, both halves; throws
   * LeaseGoneError if it vanished, or if attrs now ask for the other shape
   * (an IPv6 half added or removed), which acquireLease then converts.
   */
  renewLease(lease: Lease, signal?: AbortSignal): Promise<Lease>;

  /**
   * Watch every lease. The first call of `onEvents` carries a full snapshot
   * (`snapshot: true`); later calls carry deltas. Runs until `signal` aborts,
   * reconnecting with backoff on its own.
   */
  watchLeases(onEvents: (events: LeaseEvent[], snapshot: boolean) => void, signal: AbortSignal): Promise<void>;

  /** Tell the cluster this node's network is up (Kubernetes: NetworkUnavailable=False). */
  markNetworkAvailable?(signal?: AbortSignal): Promise<void>;

  close(): Promise<void>;
}

export class LeaseGoneError extends Error {
  constructor(readonly subnet: Cidr) {
    super(`lease for ${subnet} no longer exists`);
  }
}
