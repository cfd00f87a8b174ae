// The one owner of the kernel's weft state: holds the desired state, diffs it
// against a fresh kernel snapshot and applies the difference. Runs on every
// desired-state change, on kernel events (a route deleted by hand comes back
// at once) and on a slow timer as a backstop. Never two runs at once.
import type { Logger } from 'pino';
import { SaidOnce } from '../core/said-once.js';
import { oneLine } from '../errors.js';
import { normaliseDst } from './desired-check.js';
import { planChanges, toBatches, type Plan } from './diff.js';
import { renderOp } from './iproute-render.js';
import { Iproute, type KernelAdapter } from './iproute.js';
import { KernelMonitor, isRelevantEvent, type MonitorInterest } from './monitor.js';
import { NetlinkMonitor, isRelevantKernelEvent, loadNetlinkAddon, type KernelEvent, type NetlinkAddon } from './netlink.js';
import { WEFT_LINK_PREFIX, emptyState, type DesiredState } from './state.js';

export interface ReconcilerOptions {
  logger: Logger;
  /** Network namespace to program (default: the agent's own). */
  netns?: string;
  /** Backstop resync period (default 10 s). */
  resyncMs?: number;
  /** Delay that coalesces bursts of changes and events (default 10 ms). */
  debounceMs?: number;
  /** Kernel adapter (default: iproute2 in `netns`); tests inject one to count processes. */
  kernel?: KernelAdapter;
  /**
   * Where kernel change events come from: the native addon's netlink socket
   * (default; `ip monitor` when the addon cannot be loaded), `ip monitor`
   * through the kernel adapter, or a source a test injects.
   */
  events?: 'netlink' | 'ip-monitor' | KernelEventSourceFactory;
}

/** A source of typed kernel events; `onLost` means some may have been missed. */
export type KernelEventSourceFactory = (handlers: {
  onEvents: (events: readonly KernelEvent[]) => void;
  onLost: () => void;
}) => { start(): void; stop(): void };

export interface ReconcileResult {
  /** Kernel changes made (0 when the kernel already matched). */
  applied: number;
  /** Changes the kernel refused; they are retried with backoff. */
  failed: number;
}

export interface ReconcilerStatus {
  /** The last run left the kernel matching the latest desired state. */
  inSync: boolean;
  lastError?: string;
  conflicts: string[];
  /** Changes the kernel refused in the last run, each as `change: error`. */
  failures: string[];
  /** weft links that routes need but that do not exist (the udp loop's TUN device). */
  missingLinks: string[];
  runs: number;
}

/** The data plane's one retry policy: the kernel's runs here, and the Dataplane's passes. */
export const RETRY_MIN_MS = 200;
export const RETRY_MAX_MS = 10_000;

export class Reconciler {
  private readonly logger: Logger;
  private readonly kernel: KernelAdapter;
  private readonly resyncMs: number;
  private readonly debounceMs: number;
  private desired?: DesiredState;
  private generation = 0;
  private syncedGeneration = -1;
  private interest: MonitorInterest = { linkPrefix: WEFT_LINK_PREFIX, devs: new Set(), dsts: new Set() };

  private running?: Promise<ReconcileResult>;
  private queued?: Promise<ReconcileResult>;
  private started = false;
  private monitor?: KernelMonitor;
  private events?: { start(): void; stop(): void };
  private readonly eventsOption: NonNullable<ReconcilerOptions['events']>;
  private readonly netns?: string;
  private resyncTimer?: NodeJS.Timeout;
  private timer?: NodeJS.Timeout;
  private timerAt = Infinity;
  private retryMs = 0;
  private runs = 0;

  // Report each distinct problem once, and its end.
  private lastError?: string;
  private lastFailures?: string;
  private conflicts = new Set<string>();
  private failures: string[] = [];
  private missingLinks: string[] = [];
  private readonly noted = new SaidOnce(1000);

  constructor(opts: ReconcilerOptions) {
    this.logger = opts.logger;
    this.kernel = opts.kernel ?? new Iproute(opts.netns !== undefined ? { netns: opts.netns } : {});
    this.resyncMs = opts.resyncMs ?? 10_000;
    this.debounceMs = opts.debounceMs ?? 10;
    this.eventsOption = opts.events ?? 'netlink';
    const netns = opts.netns ?? opts.kernel?.netns;
    if (netns !== undefined) this.netns = netns;
  }

  /** Replaces the desired state; the kernel follows shortly (bursts coalesce into one run). */
  setDesired(state: DesiredState): void {
    this.desired = state;
    this.generation++;
    const devs = new Set<string>();
    for (const r of state.routes) if (r.dev && !r.dev.startsWith(WEFT_LINK_PREFIX)) devs.add(r.dev);
    for (const l of state.links) if (l.spec.kind === 'vxlan') devs.add(l.spec.dev);
    const dsts = new Set(state.routes.flatMap((r) => normaliseDst(r.dst) ?? []));
    this.interest = { linkPrefix: WEFT_LINK_PREFIX, devs, dsts };
    this.schedule(this.debounceMs);
  }

  /**
   * Reconciles now (after a run in progress, if any; concurrent callers share
   * one queued run). Rejects on errors such as a missing capability; kernel
   * refusals of single changes are counted in `failed` instead.
   */
  reconcileNow(): Promise<ReconcileResult> {
    if (!this.running) {
      const run = this.runOnce().finally(() => {
        if (this.running === run) this.running = undefined;
      });
      this.running = run;
      return run;
    }
    if (!this.queued) {
      const next = this.running.then(noop, noop).then(() => {
        this.queued = undefined;
        return this.reconcileNow();
      });
      this.queued = next;
    }
    return this.queued;
  }

  private async runOnce(): Promise<ReconcileResult> {
    const desired = this.desired;
    if (!desired) return { applied: 0, failed: 0 }; // nothing known yet: never tear down by default
    const generation = this.generation;
    this.runs++;
    const snapshot = await this.kernel.snapshot();
    const plan = planChanges(snapshot, desired);
    this.report(plan);
    let result: ReconcileResult = { applied: 0, failed: 0 };
    if (plan.ops.length) {
      const res = await this.kernel.apply(toBatches(plan.ops));
      result = { applied: res.applied, failed: res.failures.length };
      this.failures = res.failures.map((f) => `${renderOp(f.op)}: ${f.error}`).sort();
      const failures = this.failures.join('; ');
      if (failures && failures !== this.lastFailures) {
        this.logger.warn({ failures: res.failures.map((f) => ({ change: renderOp(f.op), error: f.error })) },
          'the kernel refused some data-plane changes; retrying with backoff');
      }
      this.lastFailures = failures || undefined;
      if (res.applied) {
        this.logger.info({ applied: res.applied, changes: plan.ops.slice(0, 20).map(renderOp) }, 'data plane updated');
      }
    } else {
      this.lastFailures = undefined;
      this.failures = [];
    }
    if (this.lastError) this.logger.info('data plane reconciles again');
    this.lastError = undefined;
    if (result.failed === 0) this.syncedGeneration = generation;
    return result;
  }

  private report(plan: Plan): void {
    const now = new Set(plan.conflicts);
    for (const dst of now) {
      if (!this.conflicts.has(dst)) {
        this.logger.warn({ dst }, `route to ${dst} exists but is not weft's (no proto 147); leaving it alone — remove it or change the subnet`);
      }
    }
    for (const dst of this.conflicts) if (!now.has(dst)) this.logger.info({ dst }, `route conflict for ${dst} resolved`);
    this.conflicts = now;
    this.missingLinks = [...plan.missingLinks];
    for (const name of plan.missingLinks) {
      this.noteOnce(`missing:${name}`, () => this.logger.info({ link: name }, `link ${name} does not exist yet; its routes wait for the udp backend to open it`));
    }
    for (const text of plan.rejected) {
      this.noteOnce(`rejected:${text}`, () => this.logger.warn(`desired state refused: ${text}`));
    }
  }

  private noteOnce(key: string, log: () => void): void {
    if (this.noted.news(key, '')) log();
  }

  /** Starts event-driven and periodic reconciliation until `signal` aborts or stop() is called. */
  start(signal?: AbortSignal): void {
    if (this.started || signal?.aborted) return;
    this.started = true;
    this.events = this.openEvents();
    this.events.start();
    this.resyncTimer = setInterval(() => this.schedule(0), this.resyncMs);
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
    if (this.desired) this.schedule(0);
  }

  private openEvents(): { start(): void; stop(): void } {
    const onEvents = (events: readonly KernelEvent[]): void => {
      if (events.some((ev) => isRelevantKernelEvent(ev, this.interest))) this.schedule(this.debounceMs);
    };
    const onLost = (): void => this.schedule(this.debounceMs);
    const option = this.eventsOption;
    if (typeof option === 'function') return option({ onEvents, onLost });
    let addon: NetlinkAddon | undefined;
    if (option === 'netlink') {
      try {
        addon = loadNetlinkAddon();
      } catch (err) {
        this.logger.warn(`kernel events come from \`ip monitor\` instead of the netlink socket: ${oneLine(err)}`);
      }
    }
    if (addon) {
      return new NetlinkMonitor({ addon, onEvents, onLost, logger: this.logger, ...(this.netns !== undefined ? { netns: this.netns } : {}) });
    }
    this.monitor = new KernelMonitor({
      spawn: () => this.kernel.spawnMonitor(),
      onLine: (line) => {
        if (isRelevantEvent(line, this.interest)) this.schedule(this.debounceMs);
      },
      onRestart: onLost,
      logger: this.logger,
    });
    return this.monitor;
  }

  /** Which event source runs: 'netlink', 'ip-monitor', 'injected', or undefined when stopped. */
  get eventSource(): 'netlink' | 'ip-monitor' | 'injected' | undefined {
    if (!this.events) return undefined;
    return this.events instanceof NetlinkMonitor ? 'netlink' : this.events === this.monitor ? 'ip-monitor' : 'injected';
  }

  /** Process id of `ip monitor`, while that is the event source. */
  get monitorPid(): number | undefined {
    return this.monitor?.pid;
  }

  private schedule(delayMs: number): void {
    if (!this.started) return;
    const at = Date.now() + delayMs;
    if (this.timer && this.timerAt <= at) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      void this.background();
    }, delayMs);
  }

  /** A run nobody awaits: every error is logged (once per distinct error) and retried, never thrown. */
  private async background(): Promise<void> {
    try {
      const r = await this.reconcileNow();
      if (r.failed === 0) {
        this.retryMs = 0;
        return;
      }
    } catch (err) {
      const text = oneLine(err);
      if (text !== this.lastError) this.logger.error({ err: text }, 'data plane reconcile failed; retrying with backoff');
      this.lastError = text;
    }
    this.retryMs = Math.min(Math.max(this.retryMs * 2, RETRY_MIN_MS), RETRY_MAX_MS);
    this.schedule(this.retryMs);
  }

  status(): ReconcilerStatus {
    return {
      inSync: this.desired !== undefined && this.syncedGeneration === this.generation && !this.lastError,
      ...(this.lastError ? { lastError: this.lastError } : {}),
      conflicts: [...this.conflicts],
      failures: [...this.failures],
      missingLinks: [...this.missingLinks],
      runs: this.runs,
    };
  }

  /** Stops events and timers and waits for a run in progress; the kernel keeps its state. */
  async stop(): Promise<void> {
    this.started = false;
    this.events?.stop();
    this.events = undefined;
    this.monitor = undefined;
    clearInterval(this.resyncTimer);
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    await this.queued?.then(noop, noop);
    await this.running?.then(noop, noop);
  }

  /** Stops, then removes everything weft owns: proto-147 routes and weft links (TUN included). */
  async teardown(): Promise<ReconcileResult> {
    await this.stop();
    const plan = planChanges(await this.kernel.snapshot(), emptyState(), { removeTunLinks: true });
    if (!plan.ops.length) return { applied: 0, failed: 0 };
    const res = await this.kernel.apply(toBatches(plan.ops));
    this.logger.info({ removed: res.applied }, 'removed weft routes and links');
    return { applied: res.applied, failed: res.failures.length };
  }
}

function noop(): void {}
