// `weft bench scale`: N simulated nodes (worker.ts) against one real etcd,
// then one real node namespace programmed for N-1 peers (reconcile.ts).
import { fork, type ChildProcess } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLOCK_TICKS_PER_SECOND } from '../cpu.js';
import { percentile } from '../stats.js';
import { processCpuTicks, processRssKiB } from '../../core/process.js';
import { EtcdServer, removeEtcdLeftovers } from '../../lab/etcd.js';
import { createEtcdClient, DEFAULT_ETCD_PREFIX } from '../../subnet/etcd/client.js';
import { configKey } from '../../subnet/etcd/layout.js';
import { WeftError } from '../../errors.js';
import { scaleNetConf, now, type FromWorker, type ScaleBackend, type ToWorker, type WorkerCounters } from './cluster.js';
import { counterDelta, readEtcdCounters, type EtcdCounters } from './etcd-metrics.js';
import { measureReconciler, type ReconcileFigures } from './reconcile.js';

const HERE = fileURLToPath(import.meta.url);
const WORKER = join(dirname(HERE), `worker${extname(HERE)}`);
/** From TypeScript source (tests) the worker needs this process's module loader. */
const LOADER = extname(HERE) === '.ts' ? process.execArgv.filter((a) => /^--(import|loader|experimental-loader)=/.test(a)) : [];
export const SCALE_ETCD_TAG = 'weft-scale-etcd-';

export interface ScaleOptions {
  nodes: number;
  joins: number;
  /** Joins per second (default 10). */
  joinRate?: number;
  backend?: ScaleBackend;
  /** Lease TTL of every simulated node: short, so renewals happen during the run (default 30 s). */
  ttlSeconds?: number;
  /** Worker processes (default: one per 250 nodes, 1 to 4). */
  workers?: number;
  /** Milliseconds to let the started cluster settle before measuring (default 2000). */
  settleMs?: number;
  /** Seconds of idle CPU measurement (default 5). */
  idleSeconds?: number;
  /** Namespace for the reconciler part. */
  netns: string;
  /** Passes per reconciler figure (default 5). */
  reps?: number;
  log: (line: string) => void;
}

export interface ScaleResult {
  nodes: number;
  joins: number;
  joinRate: number;
  backend: ScaleBackend;
  workers: number;
  ttlSeconds: number;
  startedAt: string;
  host: { cpus: number; loadavg1: number };
  /** Milliseconds from a joiner asking for its lease to the last steady agent holding it in its desired state. */
  visibility: { p50: number; p99: number; max: number; joinsSeenByAll: number; joinsCompleted: number; meanAgentsReached: number };
  etcd: {
    /** Counters over the churn window (joins, plus the renewals falling in it). */
    window: EtcdCounters;
    renewalsInWindow: number;
    /** From the agents' logs, in the window: failed renewals (their reads count as extra ranges), re-lists, watch restarts. */
    renewalFailures: number;
    relists: number;
    watchRetries: number;
    /**
     * The steady nodes' own requests in the window, from their subnet
     * managers' counters: lists of the lease directory (a re-list), single-key
     * reads (a renewal reads its key once per try, then sends one keepalive), keepalives and every other call.
     */
    steadyRequests: { lists: number; ranges: number; keepalives: number; other: number };
    watchers: number;
    watchStreams: number;
    perChange: { requests: number; receivedBytes: number; sentBytes: number; watchMessages: number };
    perAgentPerChange: { watchMessages: number; sentBytes: number };
    cpuSecondsChurn: number;
    rssBytes: number;
  };
  agent: {
    rssBytes: number;
    heapBytes: number;
    /** CPU milliseconds per second (thousandths of a core) per agent. */
    cpuIdleMsPerSec: number;
    cpuChurnMsPerSec: number;
    /** CPU milliseconds per agent per join: the event and one desired-state computation. */
    cpuMsPerChange: number;
    desiredMsPerCall: number;
  };
  reconciler: ReconcileFigures[];
}

class Worker {
  readonly child: ChildProcess;
  private readonly waiters: { type: FromWorker['type']; resolve: (m: FromWorker) => void }[] = [];
  onJoined?: (m: Extract<FromWorker, { type: 'joined' }>) => void;
  failure?: string;
  private exited: Promise<void>;

  constructor() {
    this.child = fork(WORKER, [], { execArgv: LOADER, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    this.child.on('message', (m: FromWorker) => {
      if (m.type === 'error') this.failure ??= m.message;
      if (m.type === 'joined') this.onJoined?.(m);
      const i = this.waiters.findIndex((w) => w.type === m.type);
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(m);
    });
  }

  send(msg: ToWorker): void {
    if (this.child.connected) this.child.send(msg);
  }

  request<T extends FromWorker['type']>(msg: ToWorker, reply: T, timeoutMs: number): Promise<Extract<FromWorker, { type: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(this.failure ?? `a worker did not answer "${msg.type}" within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({ type: reply, resolve: (m) => (clearTimeout(timer), resolve(m as Extract<FromWorker, { type: T }>)) });
      this.send(msg);
    });
  }

  cpuTicks(): number {
    return this.child.pid ? processCpuTicks(this.child.pid) : 0;
  }

  async stop(): Promise<void> {
    this.send({ type: 'stop' });
    const done = await Promise.race([this.exited.then(() => true), sleep(5000).then(() => false)]);
    if (!done) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

function sumCounters(list: readonly WorkerCounters[]): WorkerCounters {
  const out: WorkerCounters = { agents: 0, renewals: 0, reacquisitions: 0, eventBatches: 0, snapshots: 0, rss: 0, heapUsed: 0, desiredMs: 0, desiredCalls: 0, renewalFailures: 0, relists: 0, watchRetries: 0, steadyLists: 0, steadyRanges: 0, steadyKeepalives: 0, steadyOtherRequests: 0 };
  for (const c of list) for (const k of Object.keys(out) as (keyof WorkerCounters)[]) out[k] += c[k];
  return out;
}

function processRss(pid: number | undefined): number {
  return pid === undefined ? 0 : (processRssKiB(pid) ?? 0) * 1024;
}

export async function runScale(opts: ScaleOptions): Promise<ScaleResult> {
  const n = opts.nodes;
  const backend = opts.backend ?? 'vxlan';
  const joinRate = opts.joinRate ?? 10;
  const ttlSeconds = opts.ttlSeconds ?? 30;
  const idleSeconds = opts.idleSeconds ?? 5;
  const k = opts.workers ?? Math.min(4, Math.max(1, Math.ceil(n / 250)));
  const startedAt = new Date().toISOString();
  const log = (line: string) => opts.log(`N=${n}: ${line}`);

  await removeEtcdLeftovers(SCALE_ETCD_TAG);
  const etcd = await EtcdServer.start({ tag: SCALE_ETCD_TAG });
  const workers: Worker[] = [];
  try {
    const prefix = DEFAULT_ETCD_PREFIX;
    const client = createEtcdClient({ endpoints: [etcd.endpoint], prefix });
    try {
      await client.put(configKey(prefix)).value(scaleNetConf(backend));
    } finally {
      client.close();
    }
    log(`etcd at ${etcd.endpoint}; starting ${n} agents in ${k} worker processes`);
    for (let w = 0; w < k; w++) workers.push(new Worker());
    const started = Date.now();
    await Promise.all(
      workers.map((w, i) =>
        w.request(
          { type: 'start', endpoint: etcd.endpoint, prefix, backend, ttlSeconds, nodes: Array.from({ length: n }, (_, j) => j).filter((j) => j % k === i), concurrency: 8 },
          'ready',
          120_000 + n * 500,
        ),
      ),
    );
    log(`${n} agents hold leases and watch (${((Date.now() - started) / 1000).toFixed(1)} s)`);

    const counters = async (): Promise<WorkerCounters> => sumCounters((await Promise.all(workers.map((w) => w.request({ type: 'counters' }, 'counters', 30_000)))).map((m) => m.counters));
    const cpuTicks = (): number => workers.reduce((a, w) => a + w.cpuTicks(), 0);

    await sleep(opts.settleMs ?? 2000);
    const idleBefore = cpuTicks();
    const idleStart = Date.now();
    await sleep(idleSeconds * 1000);
    const idleCpu = (cpuTicks() - idleBefore) / CLOCK_TICKS_PER_SECOND;
    const idleWall = (Date.now() - idleStart) / 1000;
    log(`idle: ${((idleCpu / idleWall / n) * 1000).toFixed(3)} ms CPU per second per agent`);

    // Churn: joiners at joinRate per second, each a new node in some worker.
    const joined = new Map<string, number>();
    for (const w of workers) w.onJoined = (m) => joined.set(m.key, m.at);
    const etcdBefore = await readEtcdCounters(etcd.endpoint);
    const countersBefore = await counters();
    const cpuBefore = cpuTicks();
    const etcdCpuBefore = etcd.pid ? processCpuTicks(etcd.pid) : 0;
    const churnStart = Date.now();
    log(`${opts.joins} joins at ${joinRate}/s`);
    for (let j = 0; j < opts.joins; j++) {
      workers[j % k]!.send({ type: 'join', node: n + j });
      await sleep(1000 / joinRate);
    }
    // Until every join is in every steady agent's desired state.
    const deadline = Date.now() + 60_000 + n * 60;
    let seen: Record<string, { count: number; lastAt: number }> = {};
    for (;;) {
      const failure = workers.find((w) => w.failure)?.failure;
      if (failure) throw new WeftError(`a simulated agent failed: ${failure}`, 'see the message; rerun with WEFT_SCALE_LOG=info for the agents\' logs');
      const keys = [...joined.keys()];
      if (keys.length) {
        const parts = await Promise.all(workers.map((w) => w.request({ type: 'seen', keys }, 'seen', 30_000)));
        seen = {};
        for (const key of keys) {
          for (const p of parts) {
            const s = p.seen[key]!;
            const cur = seen[key] ?? { count: 0, lastAt: 0 };
            seen[key] = { count: cur.count + s.count, lastAt: Math.max(cur.lastAt, s.lastAt) };
          }
        }
        if (keys.length === opts.joins && keys.every((key) => seen[key]!.count >= n)) break;
      }
      if (Date.now() > deadline) break;
      await sleep(200);
    }
    const churnWall = (Date.now() - churnStart) / 1000;
    const churnCpu = (cpuTicks() - cpuBefore) / CLOCK_TICKS_PER_SECOND;
    const etcdCpu = ((etcd.pid ? processCpuTicks(etcd.pid) : 0) - etcdCpuBefore) / CLOCK_TICKS_PER_SECOND;
    const countersAfter = await counters();
    const window = counterDelta(etcdBefore, await readEtcdCounters(etcd.endpoint));
    const lags = [...joined].filter(([key]) => (seen[key]?.count ?? 0) >= n).map(([key, at]) => seen[key]!.lastAt - at).sort((a, b) => a - b);
    log(`joins seen by all ${n} agents: ${lags.length}/${opts.joins}; p99 ${percentile(lags, 99).toFixed(0)} ms`);

    const renewals = countersAfter.renewals - countersBefore.renewals;
    const calls = (m: string): number => window.calls[m] ?? 0;
    const requests = Object.values(window.calls).reduce((a, b) => a + b, 0);
    const joins = opts.joins;
    const watchers = n + joins;
    const result: Omit<ScaleResult, 'reconciler'> = {
      nodes: n,
      joins,
      joinRate,
      backend,
      workers: k,
      ttlSeconds,
      startedAt,
      host: { cpus: cpus().length, loadavg1: loadavg()[0]! },
      visibility: {
        p50: percentile(lags, 50),
        p99: percentile(lags, 99),
        max: lags.at(-1) ?? Number.NaN,
        joinsSeenByAll: lags.length,
        joinsCompleted: joined.size,
        meanAgentsReached: joined.size ? [...joined.keys()].reduce((a, key) => a + (seen[key]?.count ?? 0), 0) / joined.size : 0,
      },
      etcd: {
        window,
        renewalsInWindow: renewals,
        renewalFailures: countersAfter.renewalFailures - countersBefore.renewalFailures,
        relists: countersAfter.relists - countersBefore.relists,
        watchRetries: countersAfter.watchRetries - countersBefore.watchRetries,
        steadyRequests: {
          lists: countersAfter.steadyLists - countersBefore.steadyLists,
          ranges: countersAfter.steadyRanges - countersBefore.steadyRanges,
          keepalives: countersAfter.steadyKeepalives - countersBefore.steadyKeepalives,
          other: countersAfter.steadyOtherRequests - countersBefore.steadyOtherRequests,
        },
        watchers: window.watchers,
        watchStreams: window.watchStreams,
        perChange: { requests: requests / joins, receivedBytes: window.receivedBytes / joins, sentBytes: window.sentBytes / joins, watchMessages: window.watchMessagesSent / joins },
        perAgentPerChange: { watchMessages: window.watchMessagesSent / joins / watchers, sentBytes: window.sentBytes / joins / watchers },
        cpuSecondsChurn: etcdCpu,
        rssBytes: processRss(etcd.pid),
      },
      agent: {
        rssBytes: countersAfter.rss / countersAfter.agents,
        heapBytes: countersAfter.heapUsed / countersAfter.agents,
        cpuIdleMsPerSec: (idleCpu / idleWall / n) * 1000,
        cpuChurnMsPerSec: (churnCpu / churnWall / countersAfter.agents) * 1000,
        cpuMsPerChange: (churnCpu / joins / countersAfter.agents) * 1000,
        desiredMsPerCall: (countersAfter.desiredMs - countersBefore.desiredMs) / Math.max(1, countersAfter.desiredCalls - countersBefore.desiredCalls),
      },
    };
    await Promise.all(workers.map((w) => w.stop()));
    workers.length = 0;
    await etcd.cleanup();

    const reconciler: ReconcileFigures[] = [];
    for (const b of ['host-gw', 'vxlan'] as const) {
      log(`reconciler: ${b}, ${n - 1} peers in namespace ${opts.netns}`);
      reconciler.push(await measureReconciler({ netns: opts.netns, backend: b, peers: n - 1, ...(opts.reps ? { reps: opts.reps } : {}) }));
    }
    return { ...result, reconciler };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await etcd.cleanup();
  }
}
