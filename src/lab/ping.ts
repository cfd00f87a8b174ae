// Pod-to-pod reachability: one `ping -c 1` per ordered pair, in parallel with
// a bound, and a text rendering of the result as a matrix.
import { mapLimited, runCommand } from './command.js';

export interface PingTarget {
  name: string;
  ns: string;
  ip: string;
}

export interface PingRow {
  from: string;
  to: string;
  ip: string;
  ok: boolean;
}

export interface PingMatrix {
  ok: boolean;
  rows: PingRow[];
}

export interface PingOptions {
  concurrency?: number;
  /** Pings per pair before it counts as failed (the first may wait on ARP); default 2. */
  attempts?: number;
  /** Seconds each ping waits for its reply; default 1. */
  waitSeconds?: number;
}

export async function pingOnce(fromNs: string, ip: string, waitSeconds = 1): Promise<boolean> {
  const r = await runCommand(['ping', '-n', '-q', '-c', '1', '-W', String(waitSeconds), ip], {
    netns: fromNs,
    check: false,
    timeoutMs: (waitSeconds + 5) * 1000,
  });
  return r.code === 0;
}

export async function pingMatrix(targets: readonly PingTarget[], opts: PingOptions = {}): Promise<PingMatrix> {
  const pairs = targets.flatMap((from) => targets.filter((to) => to !== from).map((to) => ({ from, to })));
  const rows = await mapLimited(pairs, opts.concurrency ?? 6, async ({ from, to }) => {
    let ok = false;
    for (let i = 0; i < (opts.attempts ?? 2) && !ok; i++) ok = await pingOnce(from.ns, to.ip, opts.waitSeconds ?? 1);
    return { from: from.name, to: to.name, ip: to.ip, ok };
  });
  return { ok: rows.every((r) => r.ok), rows };
}

/** Rows are sources, columns destinations: "ok", "--" (unreachable), "." (self). */
export function formatPingMatrix(matrix: PingMatrix): string {
  const names = [...new Set(matrix.rows.flatMap((r) => [r.from, r.to]))];
  const cell = new Map(matrix.rows.map((r) => [`${r.from}\0${r.to}`, r.ok ? 'ok' : '--']));
  const width = Math.max(4, ...names.map((n) => n.length)) + 1;
  const pad = (s: string): string => s.padStart(width);
  const lines = [pad('') + names.map(pad).join('')];
  for (const from of names) {
    lines.push(from.padEnd(width) + names.map((to) => pad(to === from ? '.' : (cell.get(`${from}\0${to}`) ?? '?'))).join(''));
  }
  const good = matrix.rows.filter((r) => r.ok).length;
  lines.push(`${good}/${matrix.rows.length} pod pairs reachable`);
  return lines.join('\n');
}
