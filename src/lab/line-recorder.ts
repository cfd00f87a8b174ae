// Long-running observers of a lab: a process whose output lines are
// timestamped as they arrive (`ip monitor route`, `etcdctl watch`), for the
// e2e tests and the benchmarks that time how fast a change spreads.
import { spawn, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { inNetns, runCommand } from './command.js';

export interface RecordedLine {
  /** performance.now() when the line arrived. */
  at: number;
  line: string;
}

/** Resolves once the child has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
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
