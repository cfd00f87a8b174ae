// The udp loop process as the agent supervises it: found on its socket and
// adopted as it runs (a new process only when none answers, or when its
// options are not ours), restarted with backoff when it dies, polled for
// counters and features, and stopped only for teardown: an agent that merely
// exits leaves it carrying traffic for the next agent to adopt.
import { dirname, extname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { Backoff } from '../../src/core/backoff.js';
import { WeftError, oneLine } from '../../src/errors.js';
import { isAlive, spawnDetached } from '../../src/core/process.js';
import { LoopConnection, udpLoopSocket, type LoopStatus, type LoopTable } from './loop-client.js';
import type { UdpLoopOptions } from './native.js';

const POLL_MS = 1000;
/** Not ready once the process has not answered a poll for this long. */
const STALE_MS = 5000;
const START_TIMEOUT_MS = 10_000;
/** A process that ran this long before dying is restarted after the minimum delay again. */
const STABLE_MS = 60_000;

const HERE = fileURLToPath(import.meta.url);
/** loop-process.js beside this file in dist/, loop-process.ts in the source tree. */
const ENTRY = join(dirname(HERE), `loop-process${extname(HERE)}`);
/** From TypeScript source (tests) the child needs the same module loader as this process. */
const LOADER = extname(HERE) === '.ts' ? process.execArgv.filter((a) => /^--(import|loader|experimental-loader)=/.test(a)) : [];

export interface LoopSupervisorOptions {
  runDir: string;
  options: UdpLoopOptions;
  logger: Logger;
  /** Turns the process's startup error into one line naming cause and fix. */
  explain(err: unknown): unknown;
  restartDelayMs?: { min: number; max: number };
}

export class LoopSupervisor {
  private conn: LoopConnection | undefined;
  private status!: LoopStatus;
  private answeredAt = 0;
  private connectedAt = 0;
  private table: LoopTable | undefined;
  private stopping = false;
  private polling = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly pollTimer: NodeJS.Timeout;
  private readonly backoff: Backoff;
  private readonly socket: string;
  private readonly logFile: string;
  /** True when the running process was found, not started, by this supervisor. */
  adopted = false;

  private constructor(private readonly o: LoopSupervisorOptions) {
    this.socket = udpLoopSocket(o.runDir);
    this.logFile = join(o.runDir, 'udp-loop.log');
    this.backoff = new Backoff({ minMs: o.restartDelayMs?.min ?? 500, maxMs: o.restartDelayMs?.max ?? 30_000 });
    // A process that hangs gets one poll at a time from the timer, not a pile of them.
    this.pollTimer = setInterval(() => {
      if (this.polling) return;
      this.polling = true;
      void this.poll().finally(() => (this.polling = false));
    }, POLL_MS);
    this.pollTimer.unref();
  }

  /** Adopts the loop process answering on the run dir's socket, or starts one; throws the explained startup error. */
  static async open(o: LoopSupervisorOptions): Promise<LoopSupervisor> {
    const s = new LoopSupervisor(o);
    try {
      await s.attach();
    } catch (err) {
      clearInterval(s.pollTimer);
      throw o.explain(err);
    }
    return s;
  }

  get pid(): number {
    return this.status.pid;
  }

  /** What the process said at the last poll (its counters start from zero when it is replaced). */
  get last(): LoopStatus {
    return this.status;
  }

  notReadyReason(): string | undefined {
    if (!this.conn) return 'the udp loop process is not running; restarting it';
    const silent = Date.now() - this.answeredAt;
    if (silent > STALE_MS) return `the udp loop process (pid ${this.status.pid}) has not answered for ${Math.round(silent / 1000)} s`;
    return undefined;
  }

  /** Hands the table to the process; kept for a restarted one. Returns whether the device had to be recreated. */
  async setPeers(table: LoopTable): Promise<boolean> {
    this.table = table;
    if (!this.conn) return false; // the restart hands it over
    return (await this.conn.setPeers(table)).reopened;
  }

  /** Asks the process for its status now (answers come in order: the last asked is the last stored). */
  async poll(): Promise<void> {
    const conn = this.conn;
    if (!conn) return;
    try {
      this.status = await conn.status();
      this.answeredAt = Date.now();
    } catch {
      // notReadyReason() says so once it lasts
    }
  }

  /** Leaves the process running unless `teardown`, which stops it and deletes the device. */
  async stop({ teardown }: { teardown: boolean }): Promise<void> {
    this.stopping = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.restartTimer);
    const conn = this.conn;
    this.conn = undefined;
    if (!conn) return;
    if (teardown) await conn.stopProcess(this.status.pid, true);
    else conn.close();
  }

  private async attach(): Promise<void> {
    let conn = await LoopConnection.open(this.socket);
    let status = conn && (await this.statusOf(conn));
    this.adopted = status !== undefined && sameOptions(status.options, this.o.options);
    if (conn && status && !this.adopted) {
      this.o.logger.info({ loopPid: status.pid, was: status.options, now: this.o.options }, 'the running udp loop process has other options; replacing it');
      await conn.stopProcess(status.pid, false);
    }
    if (!this.adopted) {
      conn = await this.start();
      status = await this.statusOf(conn);
    }
    if (this.stopping) {
      conn!.close();
      return;
    }
    this.conn = conn!;
    this.status = status!;
    this.answeredAt = this.connectedAt = Date.now();
    void conn!.closed.then(() => this.onClosed(conn!));
    if (this.table) await this.conn.setPeers(this.table);
  }

  private async statusOf(conn: LoopConnection): Promise<LoopStatus> {
    try {
      return await conn.status();
    } catch (err) {
      conn.close();
      throw err;
    }
  }

  /** Starts a loop process in its own session (the agent's signals never reach it) and connects to it. */
  private async start(): Promise<LoopConnection> {
    const pid = spawnDetached([process.execPath, ...LOADER, ENTRY, '--run-dir', this.o.runDir, '--options', JSON.stringify(this.o.options)], this.logFile);
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const conn = await LoopConnection.open(this.socket);
      if (conn) return conn;
      if (!isAlive(pid)) throw new WeftError(`the udp loop process exited as it started`, `see ${this.logFile}`);
      if (Date.now() > deadline) throw new WeftError(`the udp loop process (pid ${pid}) did not open ${this.socket}`, `see ${this.logFile}`);
      await sleep(20);
    }
  }

  private onClosed(conn: LoopConnection): void {
    if (this.stopping || this.conn !== conn) return;
    this.conn = undefined;
    if (Date.now() - this.connectedAt >= STABLE_MS) this.backoff.reset();
    const delay = this.backoff.step();
    this.o.logger.warn({ loopPid: this.status.pid, restartInMs: delay }, 'the udp loop process exited; restarting it (the device stays, traffic resumes with the restart)');
    this.scheduleRestart(delay);
  }

  private scheduleRestart(delay: number): void {
    // A failed attach and the close of the connection it made both get here: one restart is enough.
    if (this.restartTimer) return;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopping || this.conn) return;
      this.attach().catch((err: unknown) => {
        const next = this.backoff.step();
        this.o.logger.error({ restartInMs: next }, `restarting the udp loop process failed: ${oneLine(this.o.explain(err))}`);
        this.scheduleRestart(next);
      });
    }, delay);
    this.restartTimer.unref();
  }
}

function sameOptions(a: UdpLoopOptions, b: UdpLoopOptions): boolean {
  // bindAddressV6 only when set: a single-stack loop started before it existed is still adopted.
  const key = (o: UdpLoopOptions) => JSON.stringify([o.device, o.port, o.bindAddress, o.mode, o.queues, o.offload ?? null, ...(o.bindAddressV6 ? [o.bindAddressV6] : [])]);
  return key(a) === key(b);
}
