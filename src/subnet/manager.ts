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
   * `prefer` if still free, else a free subnet. Publishes attrs.
   */
  acquireLease(attrs: LeaseAttrs, opts: { prefer?: Cidr; signal?: AbortSignal }): Promise<Lease>;

  /** Renew (and republish attrs of) this node's lease; throws LeaseGoneError if it vanished. */
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
