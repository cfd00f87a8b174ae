// This node's own lease: taken once, renewed before it expires, republished
// when the backend changes, and taken again (the same subnet, never another)
// when it vanishes. When the lease cannot be had until something outside the
// node changes (its subnet or PublicIP leased to another node, no free
// subnet) it says why once, is "blocked" (not ready), and tries again slowly
// or when a lease event wakes it. Writes of the lease never overlap.
import type { Logger } from 'pino';
import { Backoff, sleep } from '../core/backoff.js';
import { SerialQueue } from '../core/serial-queue.js';
import type { Cidr } from '../core/cidr.js';
import { WeftError, oneLine } from '../errors.js';
import type { NetConf } from '../config/netconf.js';
import { borrowedIPProblem, sameLeaseAttrs, type Lease, type LeaseAttrs } from '../subnet/lease.js';
import { LeaseBlockedError, LeaseGoneError, SubnetTakenError, type SubnetManager } from '../subnet/manager.js';
import type { AgentCounters } from './metrics.js';

export interface LeaseKeeperOptions {
  subnetManager: SubnetManager;
  logger: Logger;
  /** What this node publishes with the backend it runs now. */
  attrs: () => LeaseAttrs;
  /** The agent's retry with backoff (until success or abort). */
  retry: <T>(what: string, signal: AbortSignal, fn: () => Promise<T>) => Promise<T>;
  counters: Pick<AgentCounters, 'lease_renewals_total' | 'lease_reacquisitions_total'>;
  /** After the lease was taken again: reprogram. */
  onReacquired: (lease: Lease) => Promise<void>;
  /** Between tries while the lease is blocked (default 60 s); a lease event may cut it short. */
  blockedRetryMs?: number;
  /** subnet.env, named in the fix of a subnet conflict. */
  subnetFile: string;
}

export const DEFAULT_BLOCKED_RETRY_MS = 60_000;

/** The subnets a lease should keep if it can: an earlier run's (subnet.env), or the lease that vanished. */
export interface PreferredSubnets {
  subnet?: Cidr;
  ipv6Subnet?: Cidr;
}

export class LeaseKeeper {
  private current?: Lease;
  private readonly writes = new SerialQueue();
  private reacquiring = false;
  /** Settles when a running re-acquisition ends. */
  private reacquired: Promise<void> = Promise.resolve();
  /** Why the lease cannot be had now (one line), while blocked. */
  private blockedReason?: string;
  /** Ends the wait between blocked tries early. */
  private wake?: () => void;
  /** Addresses of pinned pods this node holds outside its subnets, published with the lease. */
  private borrowed: Cidr[] = [];

  constructor(private readonly opts: LeaseKeeperOptions) {}

  get own(): Lease | undefined {
    return this.current;
  }

  /** Why this node has no usable lease now (subnet or PublicIP taken, no free subnet), or undefined. */
  get blocked(): string | undefined {
    return this.blockedReason;
  }

  /**
   * Takes the first lease, retrying until it succeeds or `signal` aborts. A
   * subnet from an earlier run (subnet.env) is kept: pods on the node use it,
   * so if another node holds it now the lease stays blocked, never moved.
   */
  async acquire(prefer: PreferredSubnets, signal: AbortSignal): Promise<Lease> {
    this.current = await this.untilUnblocked('acquire a subnet lease', prefer, signal);
    return this.current;
  }

  /** Ends a blocked wait at once: a lease event may have freed what blocked it. */
  retryBlockedNow(): void {
    this.wake?.();
  }

  private take(prefer: PreferredSubnets, signal: AbortSignal): Promise<Lease> {
    return this.opts.subnetManager.acquireLease(this.published(), { prefer: prefer.subnet, preferIPv6: prefer.ipv6Subnet, keepPrefer: prefer.subnet !== undefined, signal });
  }

  /** `take` until it succeeds: transient failures with backoff, blocked ones said once and tried again slowly. */
  private async untilUnblocked(what: string, prefer: PreferredSubnets, signal: AbortSignal): Promise<Lease> {
    for (;;) {
      try {
        const lease = await this.opts.retry(what, signal, () => this.take(prefer, signal));
        if (this.blockedReason) this.opts.logger.info({ subnet: String(lease.subnet) }, 'subnet lease no longer blocked');
        this.blockedReason = undefined;
        return lease;
      } catch (err) {
        if (!(err instanceof LeaseBlockedError) || signal.aborted) throw err;
        const line = this.blockedLine(err);
        if (line !== this.blockedReason) this.opts.logger.error(line);
        this.blockedReason = line;
        if (!(await this.pause(signal))) throw new WeftError('stopped', 'none');
      }
    }
  }

  private blockedLine(err: LeaseBlockedError): string {
    const every = `${Math.round(this.retryMs / 1000)}s`;
    if (!(err instanceof SubnetTakenError)) return `${err.message} (retrying every ${every})`;
    const file = this.opts.subnetFile;
    return (
      `${err.message}; routes, pods and ${file} are left as they are and weft retries every ${every}: ` +
      `to give this node a new subnet, drain it, delete ${file} and restart weft (or delete the other lease if that node is gone)`
    );
  }

  private get retryMs(): number {
    return this.opts.blockedRetryMs ?? DEFAULT_BLOCKED_RETRY_MS;
  }

  /** Waits the blocked retry period, or until woken; false when `signal` aborted. */
  private pause(signal: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (slept: boolean): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.wake = undefined;
        resolve(slept);
      };
      const onAbort = (): void => done(false);
      const timer = setTimeout(() => done(true), this.retryMs);
      this.wake = () => done(true);
      if (signal.aborted) return done(false);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** What this node publishes: the backend's attributes and the addresses it borrows. */
  private published(): LeaseAttrs {
    const attrs = this.opts.attrs();
    return this.borrowed.length > 0 ? { ...attrs, borrowedIPs: [...this.borrowed] } : attrs;
  }

  /** The borrowed addresses this node publishes now. */
  get borrowedIPs(): readonly Cidr[] {
    return this.borrowed;
  }

  /**
   * Replaces this node's borrowed addresses (host routes of pinned pods it
   * runs outside its subnets) and republishes the lease in place: the same
   * key and subnets, the TTL untouched. Each address is checked as peers
   * will check it (borrowedIPProblem against `net` and the current lease);
   * the first unusable one throws a WeftError and nothing is written.
   * Duplicates count once. Before the first lease there is nothing to check
   * against: throws.
   */
  async setBorrowedIPs(ips: readonly Cidr[], net: NetConf, signal: AbortSignal): Promise<void> {
    const own = this.current;
    if (!own) throw new WeftError('cannot publish borrowed addresses before this node has a lease', 'wait for the agent to be ready');
    const unique = new Map(ips.map((ip) => [ip.toKey(), ip]));
    for (const ip of unique.values()) {
      const problem = borrowedIPProblem(ip, own, net);
      if (problem) throw new WeftError(`cannot borrow ${ip}: ${problem}`, "borrow only single pod addresses of the cluster Network from other nodes' subnets");
    }
    this.borrowed = [...unique.values()];
    await this.republish(signal);
  }

  /** Publishes the current backend's attributes and borrowed addresses on our lease (same subnet). */
  async republish(signal: AbortSignal): Promise<void> {
    // A re-acquisition under way publishes the attrs current when it succeeds; waiting for it
    // here would hold the agent's work queue for as long as the lease stays blocked.
    if (this.reacquiring) return;
    try {
      await this.writes.run(async () => {
        const own = this.current!;
        const attrs = this.published();
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

  /**
   * Takes the lease again after it vanished, on the same subnet: pods on the
   * node have addresses in it. If another node took it meanwhile, the lease
   * is blocked (the data plane and subnet.env stay as they are) until that
   * lease goes or an operator acts. Called again while running, it cuts a
   * blocked wait short.
   */
  async reacquire(signal: AbortSignal): Promise<void> {
    if (this.reacquiring) return this.retryBlockedNow();
    if (signal.aborted || !this.current) return;
    this.reacquiring = true;
    let ended = (): void => {};
    this.reacquired = new Promise<void>((resolve) => (ended = resolve));
    const previous = this.current.subnet;
    const prefer = { subnet: previous, ipv6Subnet: this.current.ipv6Subnet };
    this.opts.logger.warn({ subnet: String(previous) }, 'own lease vanished; re-acquiring the same subnet');
    try {
      const lease = await this.writes.run(() => this.untilUnblocked('re-acquire the subnet lease', prefer, signal));
      this.opts.counters.lease_reacquisitions_total++;
      this.current = lease;
      await this.opts.onReacquired(lease);
    } catch (err) {
      if (!signal.aborted) this.opts.logger.error(`re-acquiring the lease failed: ${oneLine(err)}`);
    } finally {
      this.reacquiring = false;
      ended();
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
      if (this.reacquiring) await this.reacquired;
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
