// Truth tables for the NetworkPolicy e2e matrix, in the spirit of upstream's
// Reachability (kubernetes test/e2e/network/netpol): every ordered pair of
// distinct pods starts allowed on every probed port, and a case states by
// hand what its policies change, rule by rule, later rules overriding
// earlier ones. Never derived from weft's own compiler: the table is the
// independent opinion the kernel is checked against.

export type Protocol = 'TCP' | 'UDP' | 'SCTP';

/** A probed protocol and port, written "TCP/80". */
export type PortKey = `${Protocol}/${number}`;

/** Every matrix probes these; a case may add more (e.g. "UDP/53"). */
export const MATRIX_PORTS: readonly PortKey[] = ['TCP/80', 'TCP/81', 'UDP/80', 'UDP/81', 'SCTP/80', 'SCTP/81'];

/**
 * Pods as "ns/pod" ("x/a"). A selector: one pod ("x/a"), a namespace
 * ("x/*"), a pod name in every namespace ("* /a", without the space), every
 * pod ("*"), or a list of those.
 */
export type PodSel = string | readonly string[];

/** "TCP/80", "TCP/*", "* /81" (without the space), "*", or a list. */
export type PortSel = string | readonly string[];

function matchesOne(pattern: string, value: string): boolean {
  if (pattern === '*') return true;
  const [pl, pr] = pattern.split('/');
  const [vl, vr] = value.split('/');
  return (pl === '*' || pl === vl) && (pr === '*' || pr === vr);
}

function matches(sel: PodSel | PortSel, value: string): boolean {
  return typeof sel === 'string' ? matchesOne(sel, value) : sel.some((s) => matchesOne(s, value));
}

export class Reachability {
  private readonly allowed = new Map<string, boolean>();

  /** All pairs of distinct `pods` allowed on every one of `ports`. */
  constructor(
    readonly pods: readonly string[],
    readonly ports: readonly PortKey[],
  ) {
    for (const port of ports) for (const from of pods) for (const to of pods) if (from !== to) this.allowed.set(key(port, from, to), true);
  }

  /** Pairs from `from` to `to` on `on` (default every port) are denied. */
  deny(from: PodSel, to: PodSel, on: PortSel = '*'): this {
    return this.set(from, to, on, false);
  }

  /** Pairs from `from` to `to` on `on` (default every port) are allowed. */
  allow(from: PodSel, to: PodSel, on: PortSel = '*'): this {
    return this.set(from, to, on, true);
  }

  /** Whether `from` may reach `to` on `port`. */
  get(port: PortKey, from: string, to: string): boolean {
    const v = this.allowed.get(key(port, from, to));
    if (v === undefined) throw new Error(`no probe ${port} ${from} -> ${to} in this table`);
    return v;
  }

  /** Every probe as [port, from, to]. */
  probes(): [PortKey, string, string][] {
    return [...this.allowed.keys()].map((k) => k.split(' ') as [PortKey, string, string]);
  }

  private set(from: PodSel, to: PodSel, on: PortSel, value: boolean): this {
    let hit = 0;
    for (const port of this.ports) {
      if (!matches(on, port)) continue;
      for (const f of this.pods) {
        if (!matches(from, f)) continue;
        for (const t of this.pods) {
          if (f === t || !matches(to, t)) continue;
          this.allowed.set(key(port, f, t), value);
          hit++;
        }
      }
    }
    // A rule that matches nothing is a typo in a case, not an expectation.
    if (hit === 0) throw new Error(`truth table rule matches no probe: from ${String(from)} to ${String(to)} on ${String(on)}`);
    return this;
  }
}

export function key(port: PortKey, from: string, to: string): string {
  return `${port} ${from} ${to}`;
}

/** What the probes saw: probe key (key()) -> reached. */
export type Observed = ReadonlyMap<string, boolean>;

/** One line per probe whose outcome differs from the table, sorted. */
export function mismatches(expected: Reachability, observed: Observed): string[] {
  const out: string[] = [];
  for (const [port, from, to] of expected.probes()) {
    const want = expected.get(port, from, to);
    const got = observed.get(key(port, from, to));
    if (got !== want) out.push(`${port} ${from} -> ${to}: expected ${want ? 'allow' : 'deny'}, ${got === undefined ? 'not probed' : got ? 'allowed' : 'denied'}`);
  }
  return out.sort();
}

/**
 * The grids of every port with a mismatch, rows = from, columns = to:
 * "." allowed as expected, "x" denied as expected, "A" allowed but expected
 * denied (a leak), "D" denied but expected allowed, "-" the pod itself.
 */
export function renderGrids(expected: Reachability, observed: Observed): string {
  const pods = expected.pods;
  const width = Math.max(...pods.map((p) => p.length));
  const grids: string[] = [];
  for (const port of expected.ports) {
    const rows: string[] = [];
    let bad = false;
    for (const from of pods) {
      const cells = pods.map((to) => {
        if (from === to) return '-';
        const want = expected.get(port, from, to);
        const got = observed.get(key(port, from, to));
        if (got === want) return want ? '.' : 'x';
        bad = true;
        return got ? 'A' : 'D';
      });
      rows.push(`${from.padEnd(width)} ${cells.map((c) => c.padEnd(width)).join(' ')}`);
    }
    if (bad) grids.push([`${port} (rows from, columns to; . allowed  x denied  A leak  D wrongly denied)`, `${''.padEnd(width)} ${pods.map((p) => p.padEnd(width)).join(' ')}`, ...rows].join('\n'));
  }
  return grids.join('\n\n');
}
