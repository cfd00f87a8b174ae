// Pod-to-pod reachability: one `ping -c 1` per ordered pair and address
// family, in parallel with a bound, and a text rendering of each family's
// result as a matrix.
import type { Family } from '../core/cidr.js';
import { mapLimited, runCommand } from './command.js';
import { podAddress } from './state.js';

export interface PingTarget {
  name: string;
  ns: string;
  /** The address in the lab's first family. */
  ip: string;
  /** The IPv6 address, in a lab that runs IPv6. */
  ipv6?: string;
}

export interface PingRow {
  from: string;
  to: string;
  /** The address pinged ("" when the destination has none in this family: the pair fails). */
  ip: string;
  ok: boolean;
}

export interface PingMatrix {
  family: Family;
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

/** One matrix per family, in the order given; the probes of all families share one bounded pool. */
export async function pingMatrices(targets: readonly PingTarget[], families: readonly Family[], opts: PingOptions = {}): Promise<PingMatrix[]> {
  const probes = families.flatMap((family) =>
    targets.flatMap((from) => targets.filter((to) => to !== from).map((to) => ({ family, from, to, ip: podAddress(to, family) ?? '' }))),
  );
  const results = await mapLimited(probes, opts.concurrency ?? 6, async ({ from, ip }) => {
    let ok = false;
    for (let i = 0; i < (opts.attempts ?? 2) && !ok && ip; i++) ok = await pingOnce(from.ns, ip, opts.waitSeconds ?? 1);
    return ok;
  });
  return families.map((family) => {
    const rows = probes.flatMap((p, i) => (p.family === family ? [{ from: p.from.name, to: p.to.name, ip: p.ip, ok: results[i]! }] : []));
    return { family, ok: rows.every((r) => r.ok), rows };
  });
}

/** Every ordered pair in one family (default IPv4). */
export async function pingMatrix(targets: readonly PingTarget[], opts: PingOptions & { family?: Family } = {}): Promise<PingMatrix> {
  const [matrix] = await pingMatrices(targets, [opts.family ?? 4], opts);
  return matrix!;
}

/** Rows are sources, columns destinations: "ok", "--" (unreachable), "." (self). */
export function formatPingMatrix(matrix: PingMatrix): string {
  const names = [...new Set(matrix.rows.flatMap((r) => [r.from, r.to]))];
  const cell = new Map(matrix.rows.map((r) => [`${r.from}\0${r.to}`, r.ok ? 'ok' : '--']));
  const width = Math.max(4, ...names.map((n) => n.length)) + 1;
  const pad = (s: string): string => s.padStart(width);
  const lines = [`IPv${matrix.family}`.padEnd(width) + names.map(pad).join('')];
  for (const from of names) {
    lines.push(from.padEnd(width) + names.map((to) => pad(to === from ? '.' : (cell.get(`${from}\0${to}`) ?? '?'))).join(''));
  }
  const good = matrix.rows.filter((r) => r.ok).length;
  lines.push(`${good}/${matrix.rows.length} pod pairs reachable over IPv${matrix.family}`);
  return lines.join('\n');
}
