// The fallback source of kernel change events, used only when the native
// addon (and so the netlink socket, netlink.ts) cannot be loaded:
// `ip monitor route link neigh` (this iproute2 prints them as text even
// with -json). The reconciler only needs to know
// that something it cares about changed, so lines are sorted into relevant
// or not, never fully parsed.
import type { ChildProcessByStdio } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { WEFT_ROUTE_PROTO } from './state.js';
import { normaliseDst } from './desired-check.js';

/** What the reconciler wants to hear about. */
export interface MonitorInterest {
  linkPrefix: string;
  /** Non-weft devices the desired state depends on (route devices, vxlan parents). */
  devs: ReadonlySet<string>;
  /** Normalised destinations of desired routes (a foreign route appearing or leaving there matters). */
  dsts: ReadonlySet<string>;
}

// Words a neighbour event carries and a route event never does.
const NEIGH_WORDS = /\b(lladdr|REACHABLE|STALE|DELAY|PROBE|FAILED|INCOMPLETE|NOARP|PERMANENT|router)\b/;
const ROUTE_TYPES = new Set(['unicast', 'local', 'broadcast', 'multicast', 'unreachable', 'blackhole', 'prohibit', 'throw', 'nat', 'anycast']);

/** True when a monitor line may mean the kernel no longer matches weft's desired state. */
export function isRelevantEvent(line: string, want: MonitorInterest): boolean {
  const tokens = line.replace(/^\s*\[[A-Z]+\]/, '').trim().split(/\s+/); // "[ROUTE]"-style banner
  const deleted = tokens[0] === 'Deleted';
  if (deleted) tokens.shift();
  const first = tokens[0];
  if (!first) return false;
  if (/^\d+:$/.test(first)) {
    // Link event: "7: weft.1: <...>" or "3: eth0@if2: <...>".
    const name = (tokens[1] ?? '').replace(/:$/, '').split('@')[0] ?? '';
    return name.startsWith(want.linkPrefix) || want.devs.has(name);
  }
  const at = (word: string): string | undefined => {
    const i = tokens.indexOf(word);
    return i >= 0 ? tokens[i + 1] : undefined;
  };
  const dev = at('dev');
  if (dev?.startsWith(want.linkPrefix)) {
    // Neighbour churn on a weft device matters only for the permanent entries
    // weft writes; a deleted permanent entry is reported as FAILED.
    return deleted || !NEIGH_WORDS.test(line) || /PERMANENT|permanent/.test(line);
  }
  if (at('proto') === String(WEFT_ROUTE_PROTO)) return true;
  if (NEIGH_WORDS.test(line)) return false;
  const dstText = ROUTE_TYPES.has(first) ? tokens[1] : first;
  if (dstText === 'default') return want.dsts.has('0.0.0.0/0') || want.dsts.has('::/0');
  const dst = normaliseDst(dstText);
  return dst !== undefined && want.dsts.has(dst);
}

/**
 * Relaunches a failed event source after a backoff (250 ms doubling to 5 s),
 * warning once per distinct reason.
 */
export class Relauncher {
  private timer?: NodeJS.Timeout;
  private backoffMs = 0;
  private lastError?: string;

  constructor(private readonly opts: { logger: Logger; message: string; relaunch: () => void }) {}

  failed(why: string): void {
    if (why !== this.lastError) this.opts.logger.warn({ err: why }, this.opts.message);
    this.lastError = why;
    this.backoffMs = Math.min(Math.max(this.backoffMs * 2, 250), 5_000);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.opts.relaunch();
    }, this.backoffMs);
  }

  /** The source runs well again: the next failure is retried quickly. True if it had failed. */
  healthy(): boolean {
    this.backoffMs = 0;
    const had = this.lastError !== undefined;
    this.lastError = undefined;
    return had;
  }

  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

export interface KernelMonitorOptions {
  spawn: () => ChildProcessByStdio<null, Readable, Readable>;
  onLine: (line: string) => void;
  /** Called after a restart: events may have been missed meanwhile. */
  onRestart: () => void;
  logger: Logger;
}

/** Keeps one monitor process running, restarting it with backoff if it dies. */
export class KernelMonitor {
  private child?: ChildProcessByStdio<null, Readable, Readable>;
  private running = false;
  private readonly relauncher: Relauncher;

  constructor(private readonly opts: KernelMonitorOptions) {
    this.relauncher = new Relauncher({
      logger: opts.logger,
      message: 'kernel monitor stopped; restarting it',
      relaunch: () => {
        if (!this.running) return;
        this.launch();
        this.opts.onRestart();
      },
    });
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.launch();
  }

  private launch(): void {
    let child: ChildProcessByStdio<null, Readable, Readable>;
    try {
      child = this.opts.spawn();
    } catch (err) {
      this.died(String(err));
      return;
    }
    this.child = child;
    const startedAt = Date.now();
    let stderr = '';
    createInterface({ input: child.stdout }).on('line', (line) => this.opts.onLine(line));
    child.stderr.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-500);
    });
    let ended = false;
    const end = (why: string): void => {
      if (ended) return;
      ended = true;
      if (this.child === child) this.child = undefined;
      if (!this.running) return;
      // A monitor that ran a while is healthy again: restart quickly.
      if (Date.now() - startedAt > 10_000) this.relauncher.healthy();
      this.died(stderr.trim().split('\n')[0] || why);
    };
    child.on('error', (err) => end(err.message));
    child.on('close', (code, signal) => end(`exited (${signal ?? `code ${code}`})`));
  }

  private died(why: string): void {
    if (this.running) this.relauncher.failed(why);
  }

  /** The running monitor's process id (tests kill it to prove the restart). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  stop(): void {
    this.running = false;
    this.relauncher.cancel();
    this.child?.kill('SIGTERM');
    this.child = undefined;
  }
}
