// `weft bench bgp-scale`: the bgp backend with two route reflectors and N
// clients, every node a real agent with its own BIRD. Reports how fast a
// join reaches every kernel, the sessions per node, BIRD's memory per node,
// and the same memory worked out for 1000 nodes. A throwaway BIRD announces
// enough extra routes that every node carries as many as in a 1000-node
// cluster, so a client's figures at 1000 nodes are measured; a reflector's
// cost per session at that route count is measured from two sizes (a
// client's 2 sessions and a reflector's dozens, same routes) and
// extrapolated linearly to 999 sessions. Figures, no verdicts.
import { readFile, mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { birdc, showBgpSessions } from '../../backends/bgp/birdc.js';
import { Cidr } from '../core/cidr.js';
import { processRssKiB } from '../core/process.js';
import { WeftError } from '../errors.js';
import { mapLimited } from '../lab/command.js';
import { timeJoin } from '../lab/join-timing.js';
import { DEFAULT_NETWORK, Lab, type LabNode } from '../lab/lab.js';
import { median, percentile } from './stats.js';

/** The size the memory figures are worked out for. */
export const TARGET_NODES = 1000;
/** The issue's goal for a join, lease written to route in every kernel. */
export const JOIN_TARGET_MS = 3000;
const REFLECTORS = 2;
const MAX_LAB_NODES = 80;
const SETTLE_TIMEOUT_MS = 300_000;

export interface BgpScaleOptions {
  clients?: number;
  joins?: number;
  /** Lab name (default "bgpscale"); namespaces wl-<name>-*. */
  name?: string;
  log?: (line: string) => void;
}

/** Medians over the nodes of one role at one point of the run. */
export interface RoleFigures {
  nodes: number;
  /** Established BGP sessions per node: min and max. */
  sessions: { min: number; max: number };
  /** Kernel routes BIRD installed (proto bird) per node, median. */
  routes: number;
  /** BIRD's own `show memory` total (effective + overhead), bytes, median. */
  birdBytes: number;
  /** BIRD's resident set size from /proc, KiB, median. */
  rssKiB: number;
}

export interface Point {
  label: string;
  nodes: number;
  client: RoleFigures;
  reflector: RoleFigures;
}

/** Memory per BGP session or per route: BIRD's own count in bytes, RSS in KiB. */
export interface Cost {
  birdBytes: number;
  rssKiB: number;
}

export interface MemoryModel {
  /** What one more session costs a BIRD, with as many routes as the lab has nodes: (reflector - client) / (their session difference). */
  perSessionFewRoutes: Cost;
  /** The same with every node carrying the extra routes (about 1000): the figure the 1000-node reflector is worked out with. */
  perSession: Cost;
  /** What one more route costs a client (2 sessions), from the extra routes. */
  perRoute: Cost;
}

export interface Projection {
  sessions: number;
  routes: number;
  birdBytes: number;
  rssKiB: number;
}

export interface BgpScaleResult {
  startedAt: string;
  host: { cpus: number; kernel: string; loadavg: { start: number; end: number } };
  clients: number;
  reflectors: number;
  join: { samplesMs: (number | null)[]; p50Ms: number; maxMs: number; targetMs: number };
  /** The extra routes the throwaway BIRD announced, and how long until every kernel had them. */
  bulk: { routes: number; toEveryKernelMs: number };
  points: Point[];
  model: MemoryModel;
  at1000: { client: Projection; reflector: Projection };
  notes: string[];
}

// --- pure pieces (unit-tested) -------------------------------------------------

const UNITS: Record<string, number> = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 };

/** Bytes of the "Total:" row of `birdc show memory` (effective + overhead); undefined when absent. */
export function parseBirdMemoryTotal(text: string): number | undefined {
  const m = /^\s*Total:\s+([\d.]+)\s+(B|kB|MB|GB)(?:\s+([\d.]+)\s+(B|kB|MB|GB))?/m.exec(text);
  if (!m) return undefined;
  const effective = Number(m[1]) * UNITS[m[2]!]!;
  const overhead = m[3] !== undefined ? Number(m[3]) * UNITS[m[4]!]! : 0;
  return Math.round(effective + overhead);
}

/** (b - a) per unit of `by` between them, for both counts. */
export function costBetween(a: RoleFigures, b: RoleFigures, by: (f: RoleFigures) => number): Cost {
  const d = by(b) - by(a);
  return { birdBytes: d !== 0 ? (b.birdBytes - a.birdBytes) / d : Number.NaN, rssKiB: d !== 0 ? (b.rssKiB - a.rssKiB) / d : Number.NaN };
}

const sessionsOf = (f: RoleFigures): number => f.sessions.max;
const routesOf = (f: RoleFigures): number => f.routes;

/**
 * The memory model from the points before the extra routes (`few`) and with
 * them (`many`): per session from client and reflector side by side (same
 * routes, different sessions), per route from a client before and after.
 */
export function memoryModel(few: Point, many: Point): MemoryModel {
  return {
    perSessionFewRoutes: costBetween(few.client, few.reflector, sessionsOf),
    perSession: costBetween(many.client, many.reflector, sessionsOf),
    perRoute: costBetween(few.client, many.client, routesOf),
  };
}

/** `from`'s figures moved linearly to `sessions` and `routes`. */
export function project(from: RoleFigures, model: MemoryModel, sessions: number, routes: number): Projection {
  const ds = sessions - sessionsOf(from);
  const dr = routes - routesOf(from);
  return {
    sessions,
    routes,
    birdBytes: Math.round(from.birdBytes + ds * model.perSession.birdBytes + dr * model.perRoute.birdBytes),
    rssKiB: Math.round(from.rssKiB + ds * model.perSession.rssKiB + dr * model.perRoute.rssKiB),
  };
}

const kib = (bytes: number): string => (Number.isFinite(bytes) ? (bytes / 1024).toFixed(1) : 'n/a');
const num = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const mib = (k: number): string => (Number.isFinite(k) ? (k / 1024).toFixed(1) : 'n/a');

export function formatBgpScaleMarkdown(r: BgpScaleResult): string {
  const row = (p: Point, role: 'client' | 'reflector'): string => {
    const f = p[role];
    return `| ${p.label} | ${p.nodes} | ${role} | ${f.sessions.min === f.sessions.max ? f.sessions.max : `${f.sessions.min}–${f.sessions.max}`} | ${f.routes} | ${kib(f.birdBytes)} | ${mib(f.rssKiB)} |`;
  };
  const cost = (what: string, c: Cost): string => `| ${what} | ${num(c.birdBytes)} B | ${num(c.rssKiB * 1024)} B |`;
  const at = (role: 'client' | 'reflector'): string => {
    const p = r.at1000[role];
    return `| ${role} | ${p.sessions} | ${p.routes} | ${kib(p.birdBytes)} | ${mib(p.rssKiB)} |`;
  };
  const joins = r.join.samplesMs.map((s) => (s === null ? 'not seen' : String(s))).join(', ');
  return [
    `## weft bench bgp-scale: ${r.reflectors} route reflectors, ${r.clients} clients, each node its own BIRD`,
    '',
    `${r.host.cpus} CPUs, kernel ${r.host.kernel}, load average ${r.host.loadavg.start.toFixed(1)} at the start and ${r.host.loadavg.end.toFixed(1)} at the end, ${r.startedAt}.`,
    '',
    '### A join: lease written to etcd → route in every other kernel',
    '',
    '| joins | p50 ms | max ms | target ms | each (ms) |',
    '|---:|---:|---:|---:|---|',
    `| ${r.join.samplesMs.length} | ${num(r.join.p50Ms)} | ${num(r.join.maxMs)} | ${r.join.targetMs} | ${joins} |`,
    '',
    `${r.bulk.routes} extra routes announced at once by one more BGP speaker reached every kernel in ${num(r.bulk.toEveryKernelMs)} ms.`,
    '',
    '### Sessions and memory per node, measured (medians over the nodes of a role)',
    '',
    '| point | nodes | role | sessions | kernel routes | BIRD `show memory` kB | BIRD RSS MiB |',
    '|---|---:|---|---:|---:|---:|---:|',
    ...r.points.flatMap((p) => [row(p, 'reflector'), row(p, 'client')]),
    '',
    '### Cost of one more session and one more route',
    '',
    '| | BIRD `show memory` | BIRD RSS |',
    '|---|---:|---:|',
    cost(`per session, ${r.points[1]?.client.routes ?? '?'} routes per node (reflector − client) / sessions`, r.model.perSessionFewRoutes),
    cost(`per session, ${r.points[2]?.client.routes ?? '?'} routes per node (reflector − client) / sessions`, r.model.perSession),
    cost('per route on a client (2 sessions)', r.model.perRoute),
    '',
    `### At ${TARGET_NODES} nodes (2 reflectors, ${TARGET_NODES - REFLECTORS} clients)`,
    '',
    `Every node already carries ${r.points[2]?.client.routes ?? '?'} routes in the last measurement; a reflector's ${TARGET_NODES - 1} sessions are extrapolated linearly from its measured ones at the per-session cost with those routes.`,
    '',
    '| role | sessions | kernel routes | BIRD `show memory` kB | BIRD RSS MiB |',
    '|---|---:|---:|---:|---:|',
    at('reflector'),
    at('client'),
    '',
    ...r.notes.map((n) => `Note: ${n}.`),
  ].join('\n') + '\n';
}

/** Writes `bench-bgp-scale-<time>.json` and `.md` into `dir`; returns both paths. */
export async function writeBgpScaleReport(r: BgpScaleResult, dir: string): Promise<{ json: string; markdown: string }> {
  await mkdir(dir, { recursive: true });
  const base = join(dir, `bench-bgp-scale-${r.startedAt.replace(/[:.]/g, '-')}`);
  const paths = { json: `${base}.json`, markdown: `${base}.md` };
  await writeFile(paths.json, JSON.stringify(r, null, 2) + '\n');
  await writeFile(paths.markdown, formatBgpScaleMarkdown(r));
  return paths;
}

// --- the run -----------------------------------------------------------------------

function birdDir(lab: Lab, node: LabNode): string {
  return join(lab.nodeDir(node), 'run', 'bird');
}

interface NodeFigures {
  sessions: number;
  routes: number;
  birdBytes: number;
  rssKiB: number;
}

async function rssOf(pidFile: string): Promise<number> {
  const pid = (await readFile(pidFile, 'utf8')).trim();
  const kib = processRssKiB(Number(pid));
  if (kib === undefined) throw new Error(`no VmRSS for BIRD pid ${pid}`);
  return kib;
}

async function measureNode(lab: Lab, node: LabNode): Promise<NodeFigures> {
  const dir = birdDir(lab, node);
  const socket = join(dir, 'bird.ctl');
  const [sessions, memory, rssKiB, routes] = await Promise.all([
    showBgpSessions(socket),
    birdc(socket, ['show', 'memory']),
    rssOf(join(dir, 'bird.pid')),
    lab.exec(node, ['ip', '-4', 'route', 'show', 'proto', 'bird']),
  ]);
  const birdBytes = parseBirdMemoryTotal(memory);
  if (birdBytes === undefined) throw new WeftError(`BIRD on ${node.name} printed no memory total`, 'check that it is BIRD 2');
  return {
    sessions: sessions.filter((s) => s.state === 'Established').length,
    routes: routes.stdout.split('\n').filter((l) => l.trim()).length,
    birdBytes,
    rssKiB,
  };
}

function roleFigures(list: readonly NodeFigures[]): RoleFigures {
  return {
    nodes: list.length,
    sessions: { min: Math.min(...list.map((f) => f.sessions)), max: Math.max(...list.map((f) => f.sessions)) },
    routes: median(list.map((f) => f.routes)),
    birdBytes: median(list.map((f) => f.birdBytes)),
    rssKiB: median(list.map((f) => f.rssKiB)),
  };
}

async function measure(lab: Lab, label: string, reflectors: readonly LabNode[]): Promise<Point> {
  const figures = await mapLimited(lab.nodes, 8, (n) => measureNode(lab, n));
  const of = (reflector: boolean): NodeFigures[] => figures.filter((_, i) => reflectors.includes(lab.nodes[i]!) === reflector);
  return { label, nodes: lab.nodes.length, client: roleFigures(of(false)), reflector: roleFigures(of(true)) };
}

/** Polls until every node has `routes` BIRD routes in its kernel and every session of `expected` is Established. */
async function settle(lab: Lab, what: string, expected: { routes: number; clientSessions: number; reflectorSessions: number }, reflectors: readonly LabNode[]): Promise<number> {
  const started = performance.now();
  const deadline = started + SETTLE_TIMEOUT_MS;
  for (;;) {
    const ok = await mapLimited(lab.nodes, 8, async (n) => {
      const [sessions, routes] = await Promise.all([
        showBgpSessions(join(birdDir(lab, n), 'bird.ctl')).catch(() => []),
        lab.exec(n, ['ip', '-4', 'route', 'show', 'proto', 'bird']),
      ]);
      const want = reflectors.includes(n) ? expected.reflectorSessions : expected.clientSessions;
      return sessions.filter((s) => s.state === 'Established').length === want && routes.stdout.split('\n').filter((l) => l.trim()).length >= expected.routes;
    });
    if (ok.every(Boolean)) return Math.round(performance.now() - started);
    if (performance.now() > deadline) throw new WeftError(`the lab did not settle after ${what} within ${SETTLE_TIMEOUT_MS / 1000} s`, `see the agents' logs in ${lab.dir}`);
    await sleep(200);
  }
}

/** /24s of the Network that no lease holds, from the top down: room for the extra routes. */
async function unusedSubnets(lab: Lab, count: number): Promise<Cidr[]> {
  const network = Cidr.parse(DEFAULT_NETWORK);
  const used = [...(await lab.etcdList(`${lab.etcdPrefix}/subnets/`)).keys()].map((k) => Cidr.fromKey(k.slice(k.lastIndexOf('/') + 1)));
  const found: Cidr[] = [];
  for (let i = 255n; i > 0n && found.length < count; i--) {
    const candidate = network.subnet(24, i);
    if (!used.some((u) => u.overlaps(candidate))) found.push(candidate);
  }
  if (found.length < count) throw new WeftError(`only ${found.length} free /24s left in ${network} for the extra routes`, 'use fewer --clients');
  return found;
}

/**
 * One more BGP speaker, a throwaway BIRD in an underlay host with a lease
 * of its own (so the reflectors take it as a client), announcing `routes`
 * /28s from free /24s of the Network: every node then carries that many more.
 */
async function injectRoutes(lab: Lab, reflectors: readonly LabNode[], routes: number): Promise<void> {
  const host = await lab.addUnderlayHost('inj');
  const perSlash24 = 16;
  const [own, ...room] = await unusedSubnets(lab, 1 + Math.ceil(routes / perSlash24));
  const prefixes = room.flatMap((c) => Array.from({ length: perSlash24 }, (_, i) => c.subnet(28, BigInt(i)))).slice(0, routes);
  const conf = join(lab.dir, 'inj.bird.conf');
  await writeFile(
    conf,
    [
      `router id ${host.ip};`,
      'protocol device {}',
      `protocol static extra { ipv4; ${prefixes.map((p) => `route ${p} blackhole;`).join(' ')} }`,
      ...reflectors.map((r, i) => `protocol bgp rr${i} { local ${host.ip} as 64512; neighbor ${r.underlayIP} as 64512; direct; ipv4 { import none; export all; }; }`),
      '',
    ].join('\n'),
  );
  await lab.etcdPut(`${lab.etcdPrefix}/subnets/${own!.toKey()}`, JSON.stringify({ PublicIP: host.ip, BackendType: 'bgp', BackendData: null, NodeName: host.ns }));
  lab.spawn(host, ['bird', '-f', '-c', conf, '-s', join(lab.dir, 'inj.bird.ctl'), '-P', join(lab.dir, 'inj.bird.pid')]);
}

export async function runBgpScale(opts: BgpScaleOptions = {}): Promise<BgpScaleResult> {
  const clients = opts.clients ?? 30;
  const joins = opts.joins ?? 5;
  const name = opts.name ?? 'bgpscale';
  const log = opts.log ?? (() => {});
  if (REFLECTORS + clients + joins > MAX_LAB_NODES) {
    throw new WeftError(`${REFLECTORS} reflectors + ${clients} clients + ${joins} joins make more than the lab's ${MAX_LAB_NODES} nodes`, `use --clients and --joins that add up to ${MAX_LAB_NODES - REFLECTORS} or less`);
  }
  const startedAt = new Date().toISOString();
  const loadStart = loadavg()[0]!;
  await Lab.destroy(name);
  const notes: string[] = [];
  try {
    log(`lab ${name}: ${REFLECTORS} reflectors + ${clients} clients, starting ${REFLECTORS + clients} agents`);
    const up = performance.now();
    const lab = await Lab.up({
      name,
      nodes: REFLECTORS + clients,
      podsPerNode: 0,
      readyTimeoutMs: SETTLE_TIMEOUT_MS,
      netConf: { Network: DEFAULT_NETWORK, Backend: { Type: 'bgp', RouteReflectors: [1, 2].map((i) => `wl-${name}-n${i}`) } },
    });
    const reflectors = lab.nodes.slice(0, REFLECTORS);
    const expect = (extraRoutes = 0): { routes: number; clientSessions: number; reflectorSessions: number } => ({
      routes: lab.nodes.length - 1 + extraRoutes,
      clientSessions: REFLECTORS,
      reflectorSessions: lab.nodes.length - 1,
    });
    await settle(lab, 'start', expect(), reflectors);
    log(`all ${lab.nodes.length} agents ready, sessions Established, routes everywhere: ${Math.round(performance.now() - up)} ms`);
    const points = [await measure(lab, 'start', reflectors)];

    const samples: (number | null)[] = [];
    for (let i = 0; i < joins; i++) {
      const { node, leaseToRoutesMs } = await timeJoin(lab, () => lab.addNode({ readyTimeoutMs: SETTLE_TIMEOUT_MS }), { timeoutMs: 60_000 });
      const ms = leaseToRoutesMs.get(4);
      samples.push(ms ?? null);
      log(`join ${i + 1}/${joins} (${node.name}): lease -> route in all ${lab.nodes.length - 1} other kernels ${ms ?? 'not seen everywhere within 60 s'} ms`);
      await settle(lab, `the join of ${node.name}`, expect(), reflectors);
    }
    if (samples.includes(null)) notes.push('a join whose route was not seen in every kernel within 60 s counts as missing, not in p50/max');
    points.push(await measure(lab, `after ${joins} joins`, reflectors));

    const extra = Math.max(1, TARGET_NODES - lab.nodes.length);
    log(`a throwaway BIRD announces ${extra} extra routes through the reflectors`);
    const bulkStart = performance.now();
    await injectRoutes(lab, reflectors, extra);
    await settle(lab, 'the extra routes', { ...expect(extra), reflectorSessions: lab.nodes.length }, reflectors);
    const bulkMs = Math.round(performance.now() - bulkStart);
    log(`${extra} extra routes in every kernel: ${bulkMs} ms`);
    await sleep(2000); // BIRD frees what the burst of updates used
    points.push(await measure(lab, `+ ${extra} extra routes`, reflectors));

    const [few, many] = [points[1]!, points[2]!];
    const model = memoryModel(few, many);
    const at1000 = {
      client: project(many.client, model, REFLECTORS, TARGET_NODES - 1),
      reflector: project(many.reflector, model, TARGET_NODES - 1, TARGET_NODES - 1),
    };
    notes.push(
      `the reflector at ${TARGET_NODES} nodes is extrapolated linearly in sessions; a session costs more the more routes it exports (compare the two per-session rows), so the figure holds for about ${many.client.routes} routes, not beyond`,
      'RSS moves in whole pages and rarely shrinks, so its costs are rougher than those of BIRD\'s own count, which adds effective memory and allocator overhead',
      'kernel routes are counted with ip route show proto bird; the kernel\'s own memory for them is not in these figures',
    );
    return {
      startedAt,
      host: { cpus: cpus().length, kernel: release(), loadavg: { start: loadStart, end: loadavg()[0]! } },
      clients,
      reflectors: REFLECTORS,
      join: { samplesMs: samples, p50Ms: percentile(samples, 50), maxMs: percentile(samples, 100), targetMs: JOIN_TARGET_MS },
      bulk: { routes: extra, toEveryKernelMs: bulkMs },
      points,
      model,
      at1000,
      notes,
    };
  } finally {
    log(`removing lab ${name}`);
    await Lab.destroy(name).catch(() => {});
  }
}
