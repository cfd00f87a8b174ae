// The control socket of the udp loop process (loop-process.ts), seen from
// the agent: one JSON object per line each way, every request answered once,
// matched by id (a late answer to a timed-out request is dropped).
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { terminate, waitForExit } from '../../src/core/process.js';
import type { UdpCounters, UdpFeatures, UdpLoopOptions, UdpPeer } from './native.js';

const REQUEST_TIMEOUT_MS = 5000;
const STOP_TIMEOUT_MS = 10_000;

/** Where the loop process of the agent with run dir `runDir` listens. */
export function udpLoopSocket(runDir: string): string {
  return join(runDir, 'udp-loop.sock');
}

export interface LoopStatus {
  pid: number;
  /** What the process was started with: a restarted agent adopts it only if they are its own. */
  options: UdpLoopOptions;
  counters: UdpCounters;
  features: UdpFeatures;
  /** Entries of the peer table in force; null until one was set. */
  entries: number | null;
}

export interface LoopTable {
  peers: UdpPeer[];
  /** This node's subnet; one per family on a dual-stack node (a single one stays a string, as older loop processes take it). */
  ownSubnet: string | string[] | null;
  /**
   * This node's borrowed addresses (host routes of pinned pods it runs
   * outside its subnets): traffic to them is ours too. Left out when there
   * are none; a loop process older than this field ignores it and drops
   * that traffic until it is restarted.
   */
  borrowedIPs?: string[];
}

/** An error the loop process answered with; `code` is the addon's errno name (EADDRINUSE, ...). */
export class LoopError extends Error {
  constructor(message: string, readonly code?: string) {
    super(message);
    this.name = 'LoopError';
  }
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export class LoopConnection {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Settles when the connection ends: the process exited, or close() was called. */
  readonly closed: Promise<void>;

  private constructor(private readonly socket: Socket) {
    socket.on('error', () => undefined); // 'close' follows and settles everything
    createInterface({ input: socket }).on('line', (line) => this.onLine(line)).on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        for (const p of this.pending.values()) {
          clearTimeout(p.timer);
          p.reject(new LoopError('the udp loop process closed its socket'));
        }
        this.pending.clear();
        resolve();
      }),
    );
  }

  /** Connects to the loop process listening on `path`; undefined when none does. */
  static open(path: string): Promise<LoopConnection | undefined> {
    return new Promise((resolve) => {
      const socket = connect(path);
      const refused = (): void => resolve(undefined);
      socket.once('error', refused);
      socket.once('connect', () => {
        socket.off('error', refused);
        resolve(new LoopConnection(socket));
      });
    });
  }

  status(): Promise<LoopStatus> {
    return this.request('status');
  }

  /** The peer table in force, as last set. */
  table(): Promise<LoopTable> {
    return this.request('table');
  }

  /** Swaps the table in; `reopened` says the device had been deleted and the loop recreated it first. */
  setPeers(table: LoopTable): Promise<{ entries: number; reopened: boolean }> {
    return this.request('setPeers', { ...table });
  }

  close(): void {
    this.socket.destroy();
  }

  private request<T>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new LoopError(`the udp loop process did not answer "${op}" within ${REQUEST_TIMEOUT_MS / 1000} s`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.socket.write(`${JSON.stringify({ ...args, id, op })}\n`);
    });
  }

  private onLine(line: string): void {
    let reply: { id?: number; error?: { message?: string; code?: string } };
    try {
      reply = JSON.parse(line) as typeof reply;
    } catch {
      return;
    }
    const p = reply.id === undefined ? undefined : this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id!);
    clearTimeout(p.timer);
    if (reply.error) p.reject(new LoopError(reply.error.message ?? 'unknown error', reply.error.code));
    else p.resolve(reply);
  }

  /**
   * Stops the loop process `pid` behind this connection and waits until it is
   * gone (signalled if it does not go); `teardown` also deletes the device.
   */
  async stopProcess(pid: number, teardown: boolean): Promise<void> {
    await this.request('stop', { teardown }).catch(() => undefined);
    this.close();
    if (!(await waitForExit(pid, STOP_TIMEOUT_MS))) await terminate([pid]);
  }
}

/**
 * For `weft agent --teardown`: stops the loop process of the agent with run
 * dir `runDir`, deleting its device. False when none answers there.
 */
export async function stopUdpLoop(runDir: string, opts: { teardown: boolean }): Promise<boolean> {
  const conn = await LoopConnection.open(udpLoopSocket(runDir));
  if (!conn) return false;
  const status = await conn.status().catch(() => undefined);
  if (!status) {
    // It answers but has no loop (it failed to start and exits by itself).
    conn.close();
    return false;
  }
  await conn.stopProcess(status.pid, opts.teardown);
  return true;
}
