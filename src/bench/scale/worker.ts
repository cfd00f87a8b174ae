// A worker process of `weft bench scale`: hosts many simulated nodes. Each is
// the agent's control-plane half, real: its own EtcdSubnetManager (its own
// etcd client and connection), lease taken and renewed by the agent's
// LeaseKeeper, its own watch stream, and on every lease event the backend's
// desired(own, peers) over its whole peer set, as Agent.onLeaseEvents does.
// Only the kernel is missing. Driven by the benchmark over IPC (cluster.ts).
import { pino, type Logger } from 'pino';
import type { Backend } from '../../../backends/backend.js';
import { backendFactory } from '../../../backends/registry.js';
import { LeaseKeeper } from '../../agent/lease-keeper.js';
import { parseNetConf } from '../../config/parse.js';
import { retryUntilDone } from '../../core/retry-log.js';
import { SerialQueue } from '../../core/serial-queue.js';
import { mapLimited } from '../../lab/command.js';
import type { Lease, LeaseEvent } from '../../subnet/lease.js';
import { EtcdSubnetManager } from '../../subnet/etcd/manager.js';
import { nodeExt, nodeName, now, scaleNetConf, type FromWorker, type ToWorker, type WorkerCounters, type WorkerStart } from './cluster.js';

/** What the agents' own logs say happened: renewals that failed, watches that re-listed or retried. */
const logged = { renewalFailures: 0, relists: 0, watchRetries: 0 };
const logger: Logger = pino(
  { level: 'info' },
  {
    write(line: string): void {
      if (line.includes('lease renewal failed')) logged.renewalFailures++;
      else if (line.includes('re-listing')) logged.relists++;
      else if (line.includes('etcd lease watch')) logged.watchRetries++;
      if (process.env.WEFT_SCALE_LOG) process.stderr.write(line);
    },
  },
);
const counters = { lease_renewals_total: 0, lease_reacquisitions_total: 0 };
const stats = { eventBatches: 0, snapshots: 0, desiredMs: 0, desiredCalls: 0 };
/** Join key -> how many steady agents hold it in their desired state, and when the last one got it. */
const seen = new Map<string, { count: number; lastAt: number }>();
const agents: SimAgent[] = [];
let config: WorkerStart | undefined;

function send(msg: FromWorker): void {
  process.send?.(msg);
}

class SimAgent {
  private readonly manager: EtcdSubnetManager;
  private readonly keeper: LeaseKeeper;
  private readonly peers = new Map<string, Lease>();
  private readonly stop = new AbortController();
  private readonly work = new SerialQueue();
  private pendingPass?: Promise<void>;
  /** Joins delivered since the last pass: stamped when a pass has them in its desired state. */
  private unstamped: string[] = [];
  /** Joins already counted for this node: a lease that expires and returns is not a second node seeing it. */
  private readonly stamped = new Set<string>();
  private backend!: Backend;
  private snapshotSeen!: () => void;
  readonly watching = new Promise<void>((resolve) => (this.snapshotSeen = resolve));

  constructor(private readonly index: number, readonly steady: boolean, start: WorkerStart) {
    this.manager = new EtcdSubnetManager({ etcd: { endpoints: [start.endpoint], prefix: start.prefix }, logger, leaseTtlSeconds: start.ttlSeconds });
    this.keeper = new LeaseKeeper({
      subnetManager: this.manager,
      logger,
      attrs: () => ({ publicIP: nodeExt(this.index).publicIP, backendType: this.backend.type, backendData: this.backend.backendData, nodeName: nodeName(this.index) }),
      retry: (what, signal, fn) => retryUntilDone(what, signal, logger, fn),
      counters,
      subnetFile: 'subnet.env',
      onReacquired: () => this.program(),
    });
  }

  /**
   * Takes the lease, then renews it in the background. `asked` is when the
   * node asked for it: the join's moment (its create lands inside the call,
   * before the contention check that ends it, so peers may see it first).
   */
  async acquire(): Promise<{ lease: Lease; asked: number }> {
    // Retried like the agent's own start: a loaded etcd may miss a deadline.
    const conf = await retryUntilDone('read the network config', this.stop.signal, logger, () => this.manager.getNetworkConfig(this.stop.signal));
    const factory = await backendFactory(conf.backend.type);
    this.backend = await factory!({ config: conf, ext: nodeExt(this.index), logger, nodeName: nodeName(this.index), runDir: '/nonexistent' });
    const asked = now();
    const lease = await this.keeper.acquire({}, this.stop.signal);
    void this.keeper.renewLoop(this.stop.signal);
    return { lease, asked };
  }

  /** Follows the leases in the background; `watching` resolves at the snapshot. */
  watch(): void {
    void this.manager.watchLeases((events, snapshot) => this.onLeaseEvents(events, snapshot), this.stop.signal);
  }

  /** Agent.onLeaseEvents without the kernel: the peer set, then desired state over all of it. */
  private onLeaseEvents(events: LeaseEvent[], snapshot: boolean): void {
    stats.eventBatches++;
    if (snapshot) {
      this.peers.clear();
      stats.snapshots++;
    }
    const own = this.keeper.own!;
    for (const ev of events) {
      if (ev.lease.subnet.equals(own.subnet)) continue;
      if (ev.type === 'added') this.peers.set(ev.lease.subnet.toKey(), ev.lease);
      else this.peers.delete(ev.lease.subnet.toKey());
    }
    if (snapshot) this.snapshotSeen();
    else if (this.steady) for (const ev of events) if (ev.type === 'added') this.unstamped.push(ev.lease.subnet.toString());
    void this.program();
  }

  /** Agent.program: one pass at a time, and events during a queued pass join it. */
  private program(): Promise<void> {
    if (this.pendingPass) return this.pendingPass;
    const pass = this.work.run(async () => {
      this.pendingPass = undefined;
      const start = performance.now();
      this.backend.desired(this.keeper.own!, [...this.peers.values()]);
      stats.desiredMs += performance.now() - start;
      stats.desiredCalls++;
      this.stamp();
    });
    this.pendingPass = pass;
    return pass;
  }

  private stamp(): void {
    if (!this.unstamped.length) return;
    const at = now();
    for (const key of this.unstamped) {
      if (this.stamped.has(key)) continue;
      this.stamped.add(key);
      const s = seen.get(key) ?? { count: 0, lastAt: 0 };
      s.count++;
      s.lastAt = Math.max(s.lastAt, at);
      seen.set(key, s);
    }
    this.unstamped = [];
  }

  /** The etcd requests this node's subnet manager sent, by call. */
  requests(): Readonly<Record<string, number>> {
    return this.manager.requestCounts();
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.manager.close();
  }
}

/**
 * Every steady node takes its lease, then every one starts watching: the
 * same steady state as nodes that watch from their start, without the
 * startup's N² lease events (not what is measured) on a shared machine.
 */
async function startAll(start: WorkerStart): Promise<void> {
  parseNetConf(scaleNetConf(start.backend)); // fail early, in one line, on a bad net-conf
  const limit = Math.max(1, start.concurrency);
  const steady = start.nodes.map((i) => new SimAgent(i, true, start));
  agents.push(...steady);
  await mapLimited(steady, limit, (a) => a.acquire());
  await mapLimited(steady, limit, async (a) => {
    a.watch();
    await a.watching;
  });
  send({ type: 'ready', agents: agents.length });
}

async function joinOne(node: number): Promise<void> {
  const agent = new SimAgent(node, false, config!);
  agents.push(agent);
  const { lease, asked } = await agent.acquire();
  send({ type: 'joined', node, key: lease.subnet.toString(), at: asked });
  agent.watch();
}

/** The steady nodes' own etcd requests (their subnet managers' counters): lists, single-key reads, keepalives, the rest. */
function steadyRequests(): Pick<WorkerCounters, 'steadyLists' | 'steadyRanges' | 'steadyKeepalives' | 'steadyOtherRequests'> {
  const sums = { steadyLists: 0, steadyRanges: 0, steadyKeepalives: 0, steadyOtherRequests: 0 };
  for (const a of agents) {
    if (!a.steady) continue;
    for (const [call, n] of Object.entries(a.requests())) {
      if (call === 'list') sums.steadyLists += n;
      else if (call === 'range') sums.steadyRanges += n;
      else if (call === 'keepalive') sums.steadyKeepalives += n;
      else sums.steadyOtherRequests += n;
    }
  }
  return sums;
}

function workerCounters(): WorkerCounters {
  const mem = process.memoryUsage();
  return {
    ...steadyRequests(),
    agents: agents.length,
    renewals: counters.lease_renewals_total,
    reacquisitions: counters.lease_reacquisitions_total,
    ...stats,
    ...logged,
    rss: mem.rss,
    heapUsed: mem.heapUsed,
  };
}

async function shutdown(code: number): Promise<never> {
  await Promise.allSettled(agents.map((a) => a.close()));
  process.exit(code);
}

function fail(err: unknown): void {
  send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
}

process.on('message', (msg: ToWorker) => {
  switch (msg.type) {
    case 'start':
      config = msg;
      startAll(msg).catch(fail);
      break;
    case 'join':
      joinOne(msg.node).catch(fail);
      break;
    case 'counters':
      send({ type: 'counters', counters: workerCounters() });
      break;
    case 'seen':
      send({ type: 'seen', seen: Object.fromEntries(msg.keys.map((k) => [k, seen.get(k) ?? { count: 0, lastAt: 0 }])) });
      break;
    case 'stop':
      void shutdown(0);
      break;
  }
});
// The benchmark went away (finished, crashed or killed): so do we.
process.on('disconnect', () => void shutdown(0));
