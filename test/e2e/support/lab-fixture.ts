// Shared pieces for e2e tests on the namespace lab: a lab that is cleaned
// before and after the test, waiting for a condition, reading a node's
// routes, timing a node's join per address family, running the weft CLI
// inside a namespace, a process's RSS.
import type { Test } from 'tap';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab, agentEntry, type LabOptions } from '../../../src/lab/lab.js';
import { runCommand, type CommandOptions, type CommandResult } from '../../../src/lab/command.js';
import { Cidr } from '../../../src/core/cidr.js';

/**
 * Removes leftovers of lab `opts.name` (an earlier crashed run), registers
 * its removal as a teardown, then brings it up.
 */
export async function freshLab(t: Test, opts: LabOptions & { name: string }): Promise<Lab> {
  await Lab.destroy(opts.name);
  t.teardown(() => Lab.destroy(opts.name));
  return Lab.up(opts);
}

export interface Waited<T> {
  /** The probe returned a truthy value before the deadline. */
  ok: boolean;
  /** The probe's last value. */
  value: T;
  /** Milliseconds from the call to the probe's first truthy value (or to giving up). */
  ms: number;
}

/**
 * Polls `probe` until it returns something truthy or `timeoutMs` passes.
 * Never throws on timeout: the caller asserts on `ok` (and on the state itself),
 * so a slow shared machine gets a generous deadline, not a flaky threshold.
 */
export async function waitUntil<T>(probe: () => T | Promise<T>, opts: { timeoutMs?: number; intervalMs?: number } = {}): Promise<Waited<T>> {
  const started = performance.now();
  const deadline = started + (opts.timeoutMs ?? 30_000);
  for (;;) {
    const value = await probe();
    const now = performance.now();
    if (value || now >= deadline) return { ok: Boolean(value), value, ms: Math.round(now - started) };
    await sleep(opts.intervalMs ?? 50);
  }
}

/**
 * Polls `fn` every 100 ms until it returns something other than undefined or
 * false, and returns that; a probe that throws counts as not yet. Throws on
 * timeout, naming what it waited for and the probe's last error.
 */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (${String(last)})` : ''}`);
}

/**
 * `count` subnets of the lab's Network (SubnetLen, default /24) that no key
 * under `<prefix>/subnets/` overlaps, taken from the top of the Network down:
 * for fake or hostile leases and hand-made routes that must not land on a
 * node's real (randomly chosen) subnet.
 */
export async function unusedSubnets(lab: Lab, count: number): Promise<string[]> {
  const network = Cidr.parse(String(lab.netConf.Network));
  const len = Number(lab.netConf.SubnetLen ?? 24);
  const used: Cidr[] = [];
  for (const key of (await lab.etcdList(`${lab.etcdPrefix}/subnets/`)).keys()) {
    try {
      used.push(Cidr.fromKey(key.slice(key.lastIndexOf('/') + 1)));
    } catch {
      // not a subnet key: it overlaps nothing
    }
  }
  const found: string[] = [];
  for (let i = (1n << BigInt(len - network.prefixLen)) - 1n; i > 0n && found.length < count; i--) {
    const candidate = network.subnet(len, i);
    if (!used.some((u) => u.overlaps(candidate))) found.push(candidate.toString());
  }
  if (found.length < count) throw new Error(`only ${found.length} unused subnets in ${network}`);
  return found;
}

/** One route as `ip -json route` reports it (the fields the tests compare). */
export interface KernelRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  /** "147" for weft's routes; absent for proto boot. */
  protocol?: string;
  metric?: number;
}

/** The main table's routes in a lab namespace, sorted by destination. */
export async function routesOf(lab: Lab, target: string | { ns: string }, opts: { family?: 4 | 6; dst?: string } = {}): Promise<KernelRoute[]> {
  const argv = ['ip', `-${opts.family ?? 4}`, '-json', 'route', 'show', 'table', 'main', ...(opts.dst ? ['exact', opts.dst] : [])];
  const parsed = JSON.parse((await lab.exec(target, argv)).stdout || '[]') as KernelRoute[];
  return parsed
    .map(({ dst, gateway, dev, protocol, metric }) => ({ dst, gateway, dev, protocol, metric }))
    .sort((a, b) => a.dst.localeCompare(b.dst, 'en', { numeric: true }));
}

/** `weft ARGS...` (the built CLI) inside a lab namespace; never throws on a non-zero exit. */
export function weftCli(lab: Lab, target: string | { ns: string }, args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<CommandResult> {
  return lab.exec(target, [process.execPath, agentEntry(), ...args], { check: false, timeoutMs: opts.timeoutMs ?? 60_000 });
}

/** Resident set size of a process in KiB (VmRSS), or undefined if it is gone. */
export { processRssKiB as rssKiB } from '../../../src/core/process.js';

/**
 * Runs argv (in the root namespace) without NODE_OPTIONS: tap re-adds its
 * process and coverage hooks to everything a test spawns, and agents started
 * with them are bigger and slower than real ones.
 */
export function runUnhooked(argv: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
  return runCommand(['env', '-u', 'NODE_OPTIONS', ...argv], opts);
}

export { timeJoin, type JoinTiming } from '../../../src/lab/join-timing.js';
