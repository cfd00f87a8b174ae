// Long-running observers for e2e tests: a process whose output lines are
// timestamped as they arrive (`ip monitor route`, `etcdctl watch`), and a
// ping flow whose every reply is accounted for.
import { spawn, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { inNetns, runCommand } from '../../../src/lab/command.js';

export interface RecordedLine {
  /** performance.now() when the line arrived. */
  at: number;
  line: string;
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('close', () => resolve()));
}

/** Runs argv (inside `netns` if given) and keeps every stdout line with its arrival time. */
export class LineRecorder {
  readonly lines: RecordedLine[] = [];
  private readonly child: ChildProcess;

  private constructor(argv: readonly string[], netns?: string) {
    const [file, ...args] = inNetns(netns, argv);
    this.child = spawn(file!, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    this.child.on('error', () => {}); // shows as no lines; the test's own assertions say what is missing
    createInterface({ input: this.child.stdout! }).on('line', (line) => this.lines.push({ at: performance.now(), line }));
  }

  static start(argv: readonly string[], opts: { netns?: string } = {}): LineRecorder {
    return new LineRecorder(argv, opts.netns);
  }

  /** The first line matching `pattern` that arrived at or after `since`. */
  find(pattern: RegExp, since = 0): RecordedLine | undefined {
    return this.lines.find((l) => l.at >= since && pattern.test(l.line));
  }

  /** Every line matching `pattern` that arrived at or after `since`. */
  filter(pattern: RegExp, since = 0): RecordedLine[] {
    return this.lines.filter((l) => l.at >= since && pattern.test(l.line));
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    await exited(this.child);
  }

  /**
   * Repeats `provoke` until a line matching `pattern` arrives: proof that the
   * observer is subscribed, so later events cannot slip past it.
   */
  async settle(pattern: RegExp, provoke: () => Promise<unknown>, timeoutMs = 15_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!this.find(pattern)) {
      if (performance.now() > deadline) {
        await this.stop();
        throw new Error(`observer never reported ${pattern} within ${timeoutMs} ms`);
      }
      await provoke();
      await sleep(100);
    }
  }
}

/** `text` matched literally inside a RegExp. */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// A route no test or agent cares about: a /32 in a table of its own.
const PROBE_ROUTE = ['unreachable', '192.0.2.254/32', 'table', '250', 'proto', 'static'];

/** `ip monitor route` in `netns`, returned once it is seen to report events. */
export async function startRouteMonitor(netns: string): Promise<LineRecorder> {
  const monitor = LineRecorder.start(['ip', 'monitor', 'route'], { netns });
  await monitor.settle(/192\.0\.2\.254 .*table 250/, async () => {
    await runCommand(['ip', 'route', 'replace', ...PROBE_ROUTE], { netns });
    await runCommand(['ip', 'route', 'del', ...PROBE_ROUTE], { netns, check: false });
  });
  return monitor;
}

/**
 * `etcdctl watch --prefix PREFIX`, returned once subscribed (a put of
 * `probeKey`, which must lie under the prefix, has come through).
 */
export async function startEtcdWatch(opts: { netns: string; endpoint: string; prefix: string; probeKey: string }): Promise<LineRecorder> {
  if (!opts.probeKey.startsWith(opts.prefix)) throw new Error(`probe key ${opts.probeKey} is not under ${opts.prefix}`);
  const etcdctl = ['etcdctl', `--endpoints=${opts.endpoint}`, '--dial-timeout=3s', '--command-timeout=10s'];
  const watch = LineRecorder.start([...etcdctl, 'watch', '--prefix', opts.prefix], { netns: opts.netns });
  await watch.settle(new RegExp(`^${escapeRegExp(opts.probeKey)}$`), () => runCommand([...etcdctl, 'put', opts.probeKey, 'probe'], { netns: opts.netns }));
  await runCommand([...etcdctl, 'del', opts.probeKey], { netns: opts.netns });
  return watch;
}

export interface PingFlowResult {
  /** From ping's summary line. */
  transmitted: number;
  received: number;
  /** Sequence numbers never answered, not counting the last one (still in flight when the flow stopped). */
  lost: number[];
  duplicates: number;
}

/**
 * `ping -i INTERVAL` from a namespace, running until stop(). Replies are
 * counted by sequence number, so a loss is told apart from the one request
 * that is in flight when the flow is stopped.
 */
export class PingFlow {
  private readonly answered = new Set<number>();
  private duplicates = 0;
  private summary = '';
  private readonly child: ChildProcess;

  private constructor(netns: string, ip: string, intervalS: number, source?: string) {
    const [file, ...args] = inNetns(netns, ['ping', '-n', '-i', String(intervalS), ...(source ? ['-I', source] : []), ip]);
    this.child = spawn(file!, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    this.child.on('error', () => {});
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const seq = /bytes from .*icmp_seq=(\d+)/.exec(line)?.[1];
      if (seq !== undefined) {
        if (line.includes('DUP!')) this.duplicates++;
        else this.answered.add(Number(seq));
      } else if (/packets transmitted/.test(line)) {
        this.summary = line;
      }
    });
  }

  /** `source`: the address to ping from (ping -I), when the namespace has several. */
  static start(netns: string, ip: string, opts: { intervalS?: number; source?: string } = {}): PingFlow {
    return new PingFlow(netns, ip, opts.intervalS ?? 0.05, opts.source);
  }

  /** Replies so far. */
  get replies(): number {
    return this.answered.size;
  }

  /** The highest sequence number answered so far (0 before the first reply): marks a moment in the flow. */
  get lastSeq(): number {
    let max = 0;
    for (const seq of this.answered) if (seq > max) max = seq;
    return max;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGINT (ping prints its summary), then the accounting. */
  async stop(): Promise<PingFlowResult> {
    if (this.running) this.child.kill('SIGINT');
    await exited(this.child);
    const m = /(\d+) packets transmitted, (\d+) received/.exec(this.summary);
    const transmitted = Number(m?.[1] ?? 0);
    const lost: number[] = [];
    for (let seq = 1; seq < transmitted; seq++) if (!this.answered.has(seq)) lost.push(seq);
    return { transmitted, received: Number(m?.[2] ?? 0), lost, duplicates: this.duplicates };
  }
}
