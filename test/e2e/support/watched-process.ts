// Long-running observers for e2e tests: the lab's line recorders
// (src/lab/line-recorder.ts: `ip monitor route`, `etcdctl watch`), and a
// ping flow whose every reply is accounted for.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { exited } from '../../../src/lab/line-recorder.js';
import { inNetns } from '../../../src/lab/command.js';

export { LineRecorder, escapeRegExp, startEtcdWatch, startRouteMonitor, type RecordedLine } from '../../../src/lab/line-recorder.js';

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
