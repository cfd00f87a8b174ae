import type { NetConf } from '../config/netconf.js';
import type { Cidr, IP } from '../core/cidr.js';
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
   * With `keepPrefer`, a `prefer` leased to another node throws
   * SubnetTakenError instead of a new subnet being picked. Throws
   * LeaseBlockedError subclasses when the lease cannot be had until something
   * outside this node changes.
   */
  acquireLease(attrs: LeaseAttrs, opts: { prefer?: Cidr; preferIPv6?: Cidr; signal?: AbortSignal; keepPrefer?: boolean }): Promise<Lease>;

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

  /** Why the control plane cannot be used now ({part, reason}), or undefined while it can. */
  health?(): { part: string; reason: string } | undefined;

  /** Requests sent to the control plane so far, by call. */
  requestCounts?(): Readonly<Record<string, number>>;

  close(): Promise<void>;
}

export class LeaseGoneError extends Error {
  constructor(readonly subnet: Cidr) {
    super(`lease for ${subnet} no longer exists`);
  }
}

/**
 * The lease cannot be had until something outside this node changes (another
 * node's lease, the net-conf): the agent says why, stays up and not ready,
 * and tries again slowly. Not retryable by the usual backoff.
 */
export class LeaseBlockedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LeaseBlockedError';
  }
}

/** What a lease key says about the node holding it, for messages. */
export function holderOf(attrs: LeaseAttrs | undefined): string {
  if (!attrs) return 'a lease weft cannot read';
  return attrs.nodeName ? `node ${attrs.nodeName} (PublicIP ${attrs.publicIP})` : `PublicIP ${attrs.publicIP}`;
}

/** The subnet this node must keep (pods use it) is leased to another node. */
export class SubnetTakenError extends LeaseBlockedError {
  constructor(readonly subnet: Cidr, readonly holder: LeaseAttrs | undefined) {
    super(`this node's subnet ${subnet} is leased to ${holderOf(holder)}`);
    this.name = 'SubnetTakenError';
  }
}

/** Another node's lease carries this node's PublicIP: two nodes would share one address. */
export class PublicIPTakenError extends LeaseBlockedError {
  constructor(readonly publicIP: IP, readonly nodeName: string | undefined, holder: Lease) {
    super(
      `PublicIP ${publicIP} is already leased to ${holder.attrs.nodeName ? `node ${holder.attrs.nodeName}` : 'another node'} (subnet ${holder.subnet}); this node${nodeName ? ` (${nodeName})` : ''} cannot share it: ` +
        'pass --public-ip (or --iface) to give this node its own address, or delete that lease if it is this node under an old name',
    );
    this.name = 'PublicIPTakenError';
  }
}

/** Every subnet SubnetMin..SubnetMax allows is leased. */
export class NoFreeSubnetError extends LeaseBlockedError {
  constructor(message: string) {
    super(message);
    this.name = 'NoFreeSubnetError';
  }
}
