// iperf3 between two pods: a server left running in one, timed client runs
// from the other, results read from iperf3's JSON.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand } from '../lab/command.js';
import { spawnDetached } from '../core/process.js';

export const IPERF_PORT = 5201;

export interface IperfResult {
  /** Received throughput, bits per second. */
  bitsPerSecond: number;
  bytes: number;
  retransmits: number;
}

/** The part of iperf3's JSON report the parsers read (TCP and UDP runs share it). */
export interface IperfSum {
  bits_per_second?: number;
  bytes?: number;
  retransmits?: number;
  jitter_ms?: number;
  lost_packets?: number;
  packets?: number;
  lost_percent?: number;
}

export interface IperfDocument {
  error?: string;
  start?: { test_start?: { protocol?: string } };
  end?: { sum?: IperfSum; sum_sent?: IperfSum; sum_received?: IperfSum };
}

/** Start of a tool's output for an error message: enough to recognise it, short enough for one line. */
export function outputExcerpt(text: string, chars = 80): string {
  const flat = text.trim().replace(/\s+/g, ' ');
  if (!flat) return '(empty output)';
  return flat.length > chars ? `${flat.slice(0, chars)}…` : flat;
}

/** Parses `iperf3 -J` output; throws when it is not JSON (empty, truncated) or is iperf3's own error report. */
export function readIperfJson(text: string): IperfDocument {
  let doc: IperfDocument;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new Error(`iperf3 printed no JSON (empty or cut short): ${outputExcerpt(text)}`);
  }
  if (doc === null || typeof doc !== 'object') throw new Error(`iperf3 printed no JSON report: ${outputExcerpt(text)}`);
  if (doc.error) throw new Error(`iperf3: ${doc.error}`);
  return doc;
}

/** Reads the figures that matter from `iperf3 -J` output; throws on an iperf3 error report. */
export function parseIperfJson(text: string): IperfResult {
  const doc = readIperfJson(text);
  const rx = doc.end?.sum_received;
  if (typeof rx?.bits_per_second !== 'number' || typeof rx.bytes !== 'number') throw new Error('iperf3 JSON has no end.sum_received');
  return { bitsPerSecond: rx.bits_per_second, bytes: rx.bytes, retransmits: doc.end?.sum_sent?.retransmits ?? 0 };
}

/** Waits until something in `ns` listens on `port` (`proto` tcp or udp); `what` names it in the timeout error. */
export async function waitListening(ns: string, port: number, proto: 'tcp' | 'udp', what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await runCommand(['ss', proto === 'tcp' ? '-Hltn' : '-Hlun', `sport = :${port}`], { netns: ns, check: false });
    if (r.stdout.trim()) return;
    if (Date.now() > deadline) throw new Error(`${what} in ${ns} did not listen within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Starts `iperf3 -s` in `ns` (logging to `logDir`) and waits until it listens; returns its pid. */
export async function startIperfServer(ns: string, logDir: string, timeoutMs = 10_000): Promise<number> {
  const pid = spawnDetached(['ip', 'netns', 'exec', ns, 'iperf3', '-s', '-p', String(IPERF_PORT)], join(logDir, 'iperf3-server.log'));
  await waitListening(ns, IPERF_PORT, 'tcp', 'iperf3 server', timeoutMs);
  return pid;
}

/**
 * One timed `iperf3 -c ... -J` run from `ns` with `args` added (e.g. -P 4,
 * -u); iperf3's JSON (or its error text) as printed.
 */
export async function iperfClientOutput(ns: string, serverIp: string, seconds: number, args: readonly string[] = []): Promise<string> {
  const r = await runCommand(['iperf3', '-c', serverIp, '-p', String(IPERF_PORT), '-t', String(seconds), '-J', ...args], {
    netns: ns,
    check: false,
    timeoutMs: (seconds + 30) * 1000,
  });
  return r.stdout || r.stderr;
}

export async function runIperfClient(ns: string, serverIp: string, seconds: number): Promise<IperfResult> {
  return parseIperfJson(await iperfClientOutput(ns, serverIp, seconds));
}
