// This node's own lease: taken once, renewed before it expires, republished
// when the backend changes, and taken again (same subnet preferred) when it
// vanishes. Writes of the lease never overlap.
import type { Logger } from 'pino';
import { Backoff, sleep } from '../core/backoff.js';
import { SerialQueue } from '../core/serial-queue.js';
import type { Cidr } from '../core/cidr.js';
import { oneLine } from '../errors.js';
import { sameLeaseAttrs, type Lease, type LeaseAttrs } from '../subnet/lease.js';
import { LeaseGoneError, type SubnetManager } from '../subnet/manager.js';
import type { AgentCounters } from './metrics.js';

export interface LeaseKeeperOptions {
  subnetManager: SubnetManager;
  logger: Logger;
  /** What this node publishes with the backend it runs now. */
  attrs: () => LeaseAttrs;
  /** The agent's retry with backoff (until success or abort). */
  retry: <T>(what: string, signal: AbortSignal, fn: () => Promise<T>) => Promise<T>;
  counters: Pick<AgentCounters, 'lease_renewals_total' | 'lease_reacquisitions_total'>;
  /** After the lease was taken again (perhaps on another subnet): reprogram. */
  onReacquired: (lease: Lease) => Promise<void>;
}

/** The subnets a lease should keep if it can: an earlier run's (subnet.env), or the lease that vanished. */
export interface PreferredSubnets {
  subnet?: Cidr;
  ipv6Subnet?: Cidr;
}

export class LeaseKeeper {
  private current?: Lease;
  private readonly writes = new SerialQueue();
  private reacquiring = false;

  constructor(private readonly opts: LeaseKeeperOptions) {}

  get own(): Lease | undefined {
    return this.current;
  }

  /** Takes the first lease (the subnets of an earlier run preferred), retrying until it succeeds or `signal` aborts. */
  async acquire(prefer: PreferredSubnets, signal: AbortSignal): Promise<Lease> {
    this.current = await this.opts.retry('acquire a subnet lease', signal, () => this.take(prefer, signal));
    return this.current;
  }

  private take(prefer: PreferredSubnets, signal: AbortSignal): Promise<Lease> {
    return this.opts.subnetManager.acquireLease(this.opts.attrs(), { prefer: prefer.subnet, preferIPv6: prefer.ipv6Subnet, signal });
  }

  /** Publishes the current backend's attributes on our lease (same subnet). */
  async republish(signal: AbortSignal): Promise<void> {
    try {
      await this.writes.run(async () => {
        const own = this.current!;
        const attrs = this.opts.attrs();
        if (sameLeaseAttrs(own.attrs, attrs)) return;
        const lease = await this.opts.retry('republish the lease', signal, () => this.opts.subnetManager.renewLease({ ...own, attrs }, signal));
        if (this.current === own) this.current = lease;
      });
    } catch (err) {
      if (signal.aborted) return;
      // Not awaited: re-acquiring reprograms through the work queue a switch may be running in.
      if (err instanceof LeaseGoneError) void this.reacquire(signal);
      else this.opts.logger.error(`republishing the lease failed: ${oneLine(err)}`);
    }
  }

  /** Takes the lease again after it vanished, the same subnet preferred. */
  async reacquire(signal: AbortSignal): Promise<void> {
    if (this.reacquiring || signal.aborted || !this.current) return;
    this.reacquiring = true;
    const previous = this.current.subnet;
    const prefer = { subnet: previous, ipv6Subnet: this.current.ipv6Subnet };
    this.opts.logger.warn({ subnet: String(previous) }, 'own lease vanished; re-acquiring (same subnet preferred)');
    try {
      const lease = await this.writes.run(() => this.opts.retry('re-acquire the subnet lease', signal, () => this.take(prefer, signal)));
      this.opts.counters.lease_reacquisitions_total++;
      if (!lease.subnet.equals(previous)) {
        this.opts.logger.warn({ old: String(previous), new: String(lease.subnet) }, 'subnet changed; pods on the old subnet need restarting');
      }
      this.current = lease;
      await this.opts.onReacquired(lease);
    } catch (err) {
      if (!signal.aborted) this.opts.logger.error(`re-acquiring the lease failed: ${oneLine(err)}`);
    } finally {
      this.reacquiring = false;
    }
  }

  /** Renews an hour before expiry (two thirds into a short TTL) until `signal` aborts. */
  async renewLoop(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff({ reportNewReasons: true, onStep: (err, ms) => this.opts.logger.warn({ retryInMs: ms }, `lease renewal failed: ${oneLine(err)}`) });
    while (!signal.aborted) {
      const own = this.current!;
      if (own.expiresAt === undefined) {
        // A reservation never expires; check back now and then in case it becomes a lease.
        await sleep(60_000, signal);
        continue;
      }
      const left = own.expiresAt - Date.now();
      await sleep(Math.max(0, left > 3 * 3600_000 ? left - 3600_000 : (left * 2) / 3), signal);
      if (signal.aborted) return;
      if (this.reacquiring || this.current !== own) continue;
      try {
        // Inside the lease lock, and only if no switch republished meanwhile: never publish stale attrs.
        await this.writes.run(async () => {
          if (this.current !== own) return;
          this.current = await this.opts.subnetManager.renewLease(own, signal);
        });
        this.opts.counters.lease_renewals_total++;
        backoff.reset();
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof LeaseGoneError) await this.reacquire(signal);
        else await backoff.wait(err, signal);
      }
    }
  }
}
