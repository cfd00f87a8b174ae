// Kernel adapter over iproute2: reads with `ip -json`, writes each batch of
// changes (rendered by iproute-render.ts) through one `ip -batch -` (and one
// `bridge -batch -` for FDB entries) process, never one process per route.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { runCommand, userCause } from '../core/command.js';
import { normaliseAddr, normaliseDst, normaliseIP, normaliseMac } from './desired-check.js';
import type { Batch, KernelLink, KernelRoute, KernelSnapshot, Op, Tool } from './diff.js';
import { renderOp } from './iproute-render.js';
import { WEFT_LINK_PREFIX, type Addr, type Fdb, type Neigh } from './state.js';

export type { Tool } from './diff.js';

export interface IprouteOptions {
  /** Run every command in this network namespace (`ip -n NS`); default: the current one. */
  netns?: string;
  /** Called once per process started; tests count processes per batch with it. */
  onSpawn?: (info: { tool: Tool; purpose: 'read' | 'write' | 'monitor'; args: readonly string[] }) => void;
  /** Kill a read or write process that has not finished after this long (default 30 s). */
  timeoutMs?: number;
}

export interface ApplyResult {
  /** Ops the kernel accepted (deletes of something already gone count). */
  applied: number;
  failures: { op: Op; error: string }[];
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}


/** A user-fixable cause behind an iproute2 failure, if there is one. */
/** Splits output made of several JSON documents back to back (`ip -json -batch` prints one per command). */
export function parseJsonSequence(text: string): unknown[] {
  const out: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      if (depth === 0) start = i;
      depth++;
    } else if (c === ']' || c === '}') {
      depth--;
      if (depth === 0 && start >= 0) {
        out.push(JSON.parse(text.slice(start, i + 1)));
        start = -1;
      }
    }
  }
  return out;
}

type Json = Record<string, unknown>;

function arrayOf(v: unknown): Json[] {
  return Array.isArray(v) ? v.filter((x): x is Json => typeof x === 'object' && x !== null) : [];
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

export function parseLinks(json: unknown): KernelLink[] {
  return arrayOf(json).flatMap((l): KernelLink[] => {
    const name = str(l.ifname);
    if (!name) return [];
    const info = (l.linkinfo ?? {}) as Json;
    const kind = str(info.info_kind);
    const flags = Array.isArray(l.flags) ? l.flags : [];
    const link: KernelLink = { name, mtu: Number(l.mtu) || 0, up: flags.includes('UP'), ...(kind ? { kind } : {}) };
    const mac = normaliseMac(l.address);
    if (mac) link.mac = mac;
    if (kind === 'vxlan') {
      const d = (info.info_data ?? {}) as Json;
      const local = normaliseIP(d.local ?? d.local6);
      link.vxlan = {
        vni: Number(d.id),
        port: Number(d.port),
        learning: d.learning === true,
        ...(local ? { local } : {}),
        ...(str(d.link) ? { dev: str(d.link) } : {}),
      };
    }
    return [link];
  });
}

/** Global-scope addresses only: link-local ones are the kernel's, not anyone's config. */
export function parseAddrs(json: unknown): Addr[] {
  return arrayOf(json).flatMap((l) => {
    const dev = str(l.ifname);
    if (!dev) return [];
    return arrayOf(l.addr_info).flatMap((a): Addr[] => {
      const cidr = normaliseAddr(`${String(a.local)}/${String(a.prefixlen)}`);
      return cidr && a.scope === 'global' ? [{ dev, cidr }] : [];
    });
  });
}

function parseRoute(r: Json, family: 4 | 6, owned: boolean): KernelRoute | undefined {
  const dst = normaliseDst(r.dst, family);
  if (!dst) return undefined;
  const via = normaliseIP(r.gateway ?? (r.via as Json | undefined)?.host);
  const flags = Array.isArray(r.flags) ? r.flags : [];
  return {
    dst,
    owned,
    onlink: flags.includes('onlink'),
    ...(via ? { via } : {}),
    ...(str(r.dev) ? { dev: str(r.dev) } : {}),
    ...(typeof r.metric === 'number' ? { metric: r.metric } : {}),
  };
}

/**
 * Main-table routes of one family. `owned` comes from `route show proto 147`,
 * `all` from `route show`; an entry of `all` that is also in `owned` is
 * weft's, the rest are someone else's (the protocol may be printed by name).
 */
export function parseRoutes(owned: unknown, all: unknown, family: 4 | 6): KernelRoute[] {
  const key = (r: KernelRoute): string => `${r.dst}|${r.metric ?? ''}|${r.dev ?? ''}|${r.via ?? ''}`;
  const mine = arrayOf(owned).flatMap((r) => parseRoute(r, family, true) ?? []);
  const left = new Map<string, number>();
  for (const r of mine) left.set(key(r), (left.get(key(r)) ?? 0) + 1);
  const foreign = arrayOf(all).flatMap((j) => {
    const r = parseRoute(j, family, false);
    if (!r) return [];
    const n = left.get(key(r)) ?? 0;
    if (n > 0) {
      left.set(key(r), n - 1);
      return [];
    }
    return [r];
  });
  return [...mine, ...foreign];
}

export function parseNeighs(json: unknown): Neigh[] {
  return arrayOf(json).flatMap((n): Neigh[] => {
    const dev = str(n.dev);
    const ip = normaliseIP(n.dst);
    const mac = normaliseMac(n.lladdr);
    return dev && ip && mac ? [{ dev, ip, mac }] : [];
  });
}

/**
 * FDB entries pointing at a remote VTEP; the device's own address-list
 * entries have no dst. `devName` for output filtered by device, which omits it.
 */
export function parseFdb(json: unknown, devName?: string): Fdb[] {
  return arrayOf(json).flatMap((f): Fdb[] => {
    const dev = str(f.ifname) ?? str(f.dev) ?? devName;
    const mac = normaliseMac(f.mac);
    const dst = normaliseIP(f.dst);
    return dev && mac && dst ? [{ dev, mac, dst }] : [];
  });
}

/** Attributes each `Command failed -:N` in a `-force -batch` run's stderr to line N. */
export function parseBatchErrors(stderr: string): Map<number, string> {
  const out = new Map<number, string>();
  let pending: string[] = [];
  for (const raw of stderr.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const m = /^Command failed -:(\d+)$/.exec(line);
    if (m) {
      out.set(Number(m[1]), pending.join(' ') || 'failed');
      pending = [];
    } else {
      pending.push(line);
    }
  }
  return out;
}

const ALREADY_GONE = /No such process|No such file or directory|Cannot find device|does not exist/i;

/** What the reconciler needs from the kernel; `Iproute` is the real one. */
export interface KernelAdapter {
  /** The network namespace it programs (undefined: the current one); kernel events are watched there too. */
  readonly netns?: string;
  snapshot(): Promise<KernelSnapshot>;
  apply(batches: readonly Batch[]): Promise<ApplyResult>;
  spawnMonitor(): ChildProcessByStdio<null, Readable, Readable>;
}

export class Iproute implements KernelAdapter {
  readonly netns?: string;
  private readonly onSpawn?: IprouteOptions['onSpawn'];
  private readonly timeoutMs: number;
  /** weft's vxlan links in the last snapshot: the next one reads their FDB in the same round as the links. */
  private lastVxlans: string[] = [];

  constructor(opts: IprouteOptions = {}) {
    if (opts.netns !== undefined) this.netns = opts.netns;
    if (opts.onSpawn) this.onSpawn = opts.onSpawn;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  private toolArgs(tool: Tool, args: string[]): string[] {
    return this.netns ? ['-n', this.netns, ...args] : args;
  }

  private run(tool: Tool, purpose: 'read' | 'write', args: string[], input: string): Promise<RunResult> {
    const full = this.toolArgs(tool, args);
    this.onSpawn?.({ tool, purpose, args: full });
    return runCommand([tool, ...full], { input, timeoutMs: this.timeoutMs, check: false });
  }

  private async read(tool: Tool, args: string[], lines: string[], force = false): Promise<{ docs: unknown[]; stderr: string }> {
    const res = await this.run(tool, 'read', [...args, ...(force ? ['-force'] : []), '-batch', '-'], lines.join('\n') + '\n');
    if (res.code !== 0 && !force) {
      const text = res.stderr.trim() || `exit code ${res.code}`;
      throw userCause(tool, text, this.netns) ?? new Error(`${tool} ${args.join(' ')}: ${text.split('\n')[0]}`);
    }
    return { docs: parseJsonSequence(res.stdout), stderr: res.stderr };
  }

  /** What the kernel holds now: links, global addresses, main-table routes, permanent neighbours, weft FDB entries. */
  async snapshot(): Promise<KernelSnapshot> {
    const v4 = this.read('ip', ['-d', '-json'], [
      'link show', 'addr show', 'route show table main proto 147', 'route show table main', 'neigh show nud permanent',
    ]);
    const v6 = this.read('ip', ['-6', '-json'], ['route show table main proto 147', 'route show table main'])
      .catch((err: unknown) => {
        // A kernel booted with ipv6.disable=1 has no IPv6 routes to manage.
        if (/not supported/i.test(String(err))) return { docs: [[], []], stderr: '' };
        throw err;
      });
    // FDB entries only of weft's vxlan links (a host bridge's table can be large), read alongside
    // the links for the vxlan links the last snapshot found: one round of processes, not two.
    const guessed = this.lastVxlans;
    const fdbGuess = guessed.length ? this.readFdb(guessed) : undefined;
    fdbGuess?.catch(() => undefined); // awaited below; handled now in case the link read fails first
    const [a, b] = await Promise.all([v4, v6]);
    const [links, addrs, owned4, all4, neighs] = a.docs;
    const [owned6, all6] = b.docs;
    const snap: KernelSnapshot = {
      links: parseLinks(links),
      addrs: parseAddrs(addrs),
      routes: [...parseRoutes(owned4, all4, 4), ...parseRoutes(owned6, all6, 6)],
      neighs: parseNeighs(neighs),
      fdb: [],
    };
    const vxlans = snap.links.filter((l) => l.kind === 'vxlan' && l.name.startsWith(WEFT_LINK_PREFIX)).map((l) => l.name);
    this.lastVxlans = vxlans;
    const fromGuess = fdbGuess ? await fdbGuess : [];
    // A link the guess missed (new since the last snapshot) is read now; one it named that is gone is dropped.
    const missed = vxlans.filter((n) => !guessed.includes(n));
    const late = missed.length ? await this.readFdb(missed) : [];
    snap.fdb = [...fromGuess, ...late].filter((e) => vxlans.includes(e.dev));
    return snap;
  }

  /** The FDB entries of `devs`, one `bridge` process; a device that is gone (it may vanish meanwhile) has none. */
  private async readFdb(devs: readonly string[]): Promise<KernelSnapshot['fdb']> {
    // With a device filter entries omit the device name: pair documents with the lines that did not fail.
    const res = await this.read('bridge', ['-json'], devs.map((n) => `fdb show dev ${n}`), true);
    const failed = parseBatchErrors(res.stderr);
    for (const [, text] of failed) {
      if (!ALREADY_GONE.test(text)) throw userCause('bridge', text, this.netns) ?? new Error(`bridge fdb show: ${text}`);
    }
    const shown = devs.filter((_, i) => !failed.has(i + 1));
    return shown.flatMap((dev, i) => parseFdb(res.docs[i], dev));
  }

  /** Runs each batch as one process, in order; a failing line does not stop the rest (-force). */
  async apply(batches: readonly Batch[]): Promise<ApplyResult> {
    const result: ApplyResult = { applied: 0, failures: [] };
    for (const batch of batches) {
      if (batch.ops.length === 0) continue;
      const res = await this.run(batch.tool, 'write', ['-force', '-batch', '-'], batch.ops.map(renderOp).join('\n') + '\n');
      const errors = parseBatchErrors(res.stderr);
      if (res.code !== 0 && errors.size === 0) {
        const text = res.stderr.trim() || `exit code ${res.code}`;
        throw userCause(batch.tool, text, this.netns) ?? new Error(`${batch.tool} -batch: ${text.split('\n')[0]}`);
      }
      batch.ops.forEach((op, i) => {
        const error = errors.get(i + 1);
        if (error === undefined || (op.action === 'del' && ALREADY_GONE.test(error))) result.applied++;
        else result.failures.push({ op, error });
      });
      const denied = result.failures.find((f) => userCause(batch.tool, f.error));
      if (denied) throw userCause(batch.tool, denied.error, this.netns);
    }
    return result;
  }

  /** `ip monitor route link neigh`: one text line per event (neigh events include FDB changes). */
  spawnMonitor(): ChildProcessByStdio<null, Readable, Readable> {
    const args = this.toolArgs('ip', ['monitor', 'route', 'link', 'neigh']);
    this.onSpawn?.({ tool: 'ip', purpose: 'monitor', args });
    return spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  }
}

/**
 * Removes the routes routing protocol `proto` (never weft's) left in the
 * kernel inside `prefix`: what BIRD keeps after it stops (`persist`). The one
 * place weft deletes routes it does not own, for teardown only. `execPrefix`
 * runs it elsewhere (tests: `ip netns exec NS`).
 */
export async function flushProtocolRoutes(prefix: string, proto: string, execPrefix: readonly string[] = []): Promise<void> {
  const family = prefix.includes(':') ? '-6' : '-4';
  const r = await runCommand([...execPrefix, 'ip', family, 'route', 'flush', 'root', prefix, 'proto', proto], { check: false, timeoutMs: 10_000 });
  if (r.code !== 0) throw userCause('ip', r.stderr) ?? new Error(`ip route flush root ${prefix} proto ${proto}: ${r.stderr.trim().split('\n')[0] || `exit code ${r.code}`}`);
}
