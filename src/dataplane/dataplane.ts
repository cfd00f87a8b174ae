// Everything the node programs, applied in one place: kernel objects (links,
// addresses, routes, neighbours, FDB) through the Reconciler, weft's nftables
// table, and the parts kept outside the kernel that the agent hands over with
// them (a backend's BIRD config or udp peer table, subnet.env). One pass
// applies every part, even when an earlier one fails; while a part is failing,
// one backoff asks the owner for another pass; one status says, per part,
// whether it is in sync, pending or failed, and why. /readyz and /metrics
// read that status.
import type { Logger } from 'pino';
import { Backoff } from '../core/backoff.js';
import { oneLine } from '../errors.js';
import { NftTable, type NftRules } from './nft.js';
import { RETRY_MAX_MS, RETRY_MIN_MS, Reconciler, type ReconcilerStatus } from './reconciler.js';
import type { DesiredState } from './state.js';

/** A part kept outside the kernel; `apply` makes it match the pass's desired state. */
export interface ExtraPart {
  name: string;
  apply: () => Promise<unknown>;
}

/** The node's whole desired data plane, as one pass applies it. */
export interface NodeDesired {
  kernel: DesiredState;
  /** weft's nftables table; undefined when no rule is wanted (then no table). */
  nft: NftRules | undefined;
  /** Applied in order, after the kernel and the table. */
  extras: readonly ExtraPart[];
}

export type PartState = 'in-sync' | 'pending' | 'failed';

export interface PartStatus {
  part: string;
  state: PartState;
  /** Why the part is failed or pending. */
  reason?: string;
}

/** What the Dataplane asks of the reconciler and of the nftables table (tests pass fakes). */
export type KernelPart = Pick<Reconciler, 'setDesired' | 'reconcileNow' | 'status' | 'start' | 'stop'>;
export type TablePart = Pick<NftTable, 'apply' | 'remove' | 'start' | 'stop' | 'error'>;

export interface DataplaneOptions {
  logger: Logger;
  /** Backstop resync of the kernel objects and the table (default 10 s). */
  resyncMs?: number;
  /** Asks the owner for a fresh pass (through its own queue) while a part is failing. */
  requestPass: () => void;
  /** Default: a Reconciler on this namespace. */
  kernel?: KernelPart;
  /** Default: weft's nftables table in this namespace. */
  table?: TablePart;
}

export class Dataplane {
  private readonly log: Logger;
  private readonly nftLog: Logger;
  private readonly reconciler: KernelPart;
  private readonly table: TablePart;
  /** Whether weft's table exists; undefined until known (a previous run may have left one). */
  private tablePresent: boolean | undefined;
  private nftError?: string;
  /** Each extra part of the last pass, in order, with why it failed (undefined: in sync). */
  private extras = new Map<string, string | undefined>();
  private passes = 0;
  private readonly retry: Backoff;
  private retryTimer?: NodeJS.Timeout;
  private signal?: AbortSignal;

  constructor(private readonly opts: DataplaneOptions) {
    this.log = opts.logger;
    this.nftLog = opts.logger.child({ component: 'nftables' });
    const resync = opts.resyncMs !== undefined ? { resyncMs: opts.resyncMs } : {};
    this.reconciler = opts.kernel ?? new Reconciler({ logger: opts.logger.child({ component: 'dataplane' }), ...resync });
    this.table = opts.table ?? new NftTable({ logger: this.nftLog, ...resync });
    this.retry = new Backoff({
      minMs: RETRY_MIN_MS,
      maxMs: RETRY_MAX_MS,
      reportNewReasons: true,
      onStep: (err, ms) => this.log.warn({ retryInMs: ms }, `data plane not fully applied (${oneLine(err)}); another pass follows`),
      onRecovered: () => this.log.info('every part of the data plane is applied again'),
    });
  }

  /** Follows kernel events and resyncs until `signal` aborts. */
  start(signal: AbortSignal): void {
    this.signal = signal;
    this.reconciler.start(signal);
    signal.addEventListener('abort', () => clearTimeout(this.retryTimer), { once: true });
  }

  /**
   * One pass: the kernel objects, the table, then each extra part in order.
   * Resolves with each failed part as `part: why` (empty when all applied);
   * never rejects. A kernel refusal is retried by the reconciler on its own
   * events and backoff; any other failure schedules another pass.
   */
  async apply(desired: NodeDesired): Promise<string[]> {
    this.passes++;
    const failed: string[] = [];
    const run = async (part: string, fn: () => Promise<unknown>): Promise<string | undefined> => {
      try {
        await fn();
        return undefined;
      } catch (err) {
        const why = oneLine(err);
        failed.push(`${part}: ${why}`);
        return why;
      }
    };
    this.reconciler.setDesired(desired.kernel);
    const kernelFailed = (await run('routes', () => this.reconciler.reconcileNow())) !== undefined;
    this.nftError = await run('nftables', () => this.applyTable(desired.nft));
    const extras = new Map<string, string | undefined>();
    for (const extra of desired.extras) extras.set(extra.name, await run(extra.name, extra.apply));
    this.extras = extras;
    // The kernel's failure (always first) is the reconciler's to retry.
    this.scheduleRetry(kernelFailed ? failed.slice(1) : failed);
    return failed;
  }

  private scheduleRetry(failed: string[]): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (!failed.length) {
      this.retry.reset();
      return;
    }
    if (this.signal?.aborted) return;
    // The backoff reports each step once; the wait is this timer, so a newer pass replaces it.
    const ms = this.retry.next(new Error(failed.join('; ')));
    this.retryTimer = setTimeout(() => this.opts.requestPass(), ms);
  }

  /** Keeps weft's table equal to `rules`, and absent when none are wanted. */
  private async applyTable(rules: NftRules | undefined): Promise<void> {
    if (rules) {
      const { written } = await this.table.apply(rules);
      if (this.tablePresent !== true) {
        this.table.start(this.signal); // restore it if someone deletes it
        this.nftLog.info('nftables table weft in place');
      } else if (written) {
        this.nftLog.debug('nftables table weft updated');
      }
      this.tablePresent = true;
      return;
    }
    if (this.tablePresent === false) return;
    try {
      await this.table.remove();
      if (this.tablePresent) this.nftLog.info('nftables table weft removed: no rule is needed');
    } catch (err) {
      // Nothing wanted and nothing known to exist: a node without nft needs no table.
      if (this.tablePresent) throw err;
      this.nftLog.debug(`no leftover nftables table removed: ${oneLine(err)}`);
    }
    this.tablePresent = false;
  }

  /** The kernel objects' status, for the dataplane metrics. */
  kernelStatus(): ReconcilerStatus {
    return this.reconciler.status();
  }

  /** Every part, in the order a pass applies them: in sync, pending or failed, and why. */
  status(): PartStatus[] {
    if (this.passes === 0) return [{ part: 'dataplane', state: 'pending', reason: 'data plane not programmed yet' }];
    const out: PartStatus[] = [];
    const k = this.reconciler.status();
    const failed = (part: string, reason: string): void => void out.push({ part, state: 'failed', reason });
    for (const dst of k.conflicts) {
      failed('routes', `a route to ${dst} exists that weft does not own (no proto 147); weft will not replace it — remove it or change that subnet`);
    }
    for (const link of k.missingLinks) failed('links', `device ${link} does not exist; its routes wait for it`);
    for (const f of k.failures) failed('routes', `the kernel refused ${f}`);
    if (k.lastError) failed('routes', k.lastError);
    if (!out.length) out.push(k.inSync ? { part: 'routes', state: 'in-sync' } : { part: 'routes', state: 'pending', reason: 'a change is being applied' });
    // The table's live check is newer than the pass's outcome.
    const nft = this.table.error ?? this.nftError;
    out.push(nft ? { part: 'nftables', state: 'failed', reason: nft } : { part: 'nftables', state: 'in-sync' });
    for (const [part, reason] of this.extras) out.push(reason ? { part, state: 'failed', reason } : { part, state: 'in-sync' });
    return out;
  }

  /** Stops events, timers and checks; routes, devices and the table stay (pods keep working). */
  async stop(): Promise<void> {
    clearTimeout(this.retryTimer);
    await this.reconciler.stop();
    await this.table.stop().catch(() => undefined);
  }
}
