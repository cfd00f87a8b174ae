// The node side of `weft bench scale`: one real network namespace, the real
// backend's desired state over N-1 peers, the real Reconciler and iproute2
// adapter programming it. Measures a pass from empty, one peer added and one
// removed, and counts the processes each pass starts.
import { pino } from 'pino';
import type { Backend } from '../../../backends/backend.js';
import { backendFactory } from '../../../backends/registry.js';
import { parseNetConf } from '../../config/parse.js';
import { Cidr } from '../../core/cidr.js';
import { runCommand } from '../../core/command.js';
import { Iproute, type Tool } from '../../dataplane/iproute.js';
import { Reconciler } from '../../dataplane/reconciler.js';
import type { Lease } from '../../subnet/lease.js';
import { median } from '../stats.js';
import { SCALE_NETWORK, UNDERLAY, UNDERLAY_DEV, nodeExt, nodeName, scaleNetConf, type ScaleBackend } from './cluster.js';

export interface PassFigures {
  ms: number;
  /** Processes that wrote to the kernel in the pass (the ≤ 3 target). */
  writes: number;
  /** Processes that read the kernel's state (the snapshot). */
  reads: number;
  /** Kernel changes applied. */
  applied: number;
}

export interface ReconcileFigures {
  backend: ScaleBackend;
  peers: number;
  fromEmpty: PassFigures;
  /** weft's routes the kernel held after the first pass (should equal `peers`). */
  programmedRoutes: number;
  /** Median of `reps` passes each: one peer added, one peer removed, nothing changed. */
  add: PassFigures;
  remove: PassFigures;
  noop: PassFigures;
  /** Milliseconds of the backend's desired(own, peers) over all peers, median. */
  desiredMs: number;
}

async function ns(args: string[], check = true): Promise<string> {
  return (await runCommand(['ip', ...args], { check })).stdout;
}

/** A scratch namespace with eth0 (its veth peer eth1) on the simulated underlay; leftovers of the name go first. */
export async function createNodeNamespace(name: string): Promise<void> {
  await removeNodeNamespace(name);
  await ns(['netns', 'add', name]);
  await ns(['-n', name, 'link', 'add', UNDERLAY_DEV, 'type', 'veth', 'peer', 'name', 'eth1']);
  await ns(['-n', name, 'link', 'set', UNDERLAY_DEV, 'up']);
  await ns(['-n', name, 'link', 'set', 'eth1', 'up']);
  await ns(['-n', name, 'addr', 'add', `10.99.0.1/${UNDERLAY.split('/')[1]}`, 'dev', UNDERLAY_DEV]);
}

export async function removeNodeNamespace(name: string): Promise<void> {
  await ns(['netns', 'del', name], false);
}

/** Node i's subnet: the (i+1)-th /24 of the network; the reconciler's own node is index -1 (10.99.0.1, the first /24). */
function subnetOf(i: number): Cidr {
  return Cidr.parse(SCALE_NETWORK).subnet(24, BigInt(i + 1));
}

async function backendFor(type: ScaleBackend, i: number): Promise<Backend> {
  const logger = pino({ level: 'silent' });
  const factory = (await backendFactory(type))!;
  return factory({ config: parseNetConf(scaleNetConf(type)), ext: nodeExt(i), logger, nodeName: nodeName(i), runDir: '/nonexistent' });
}

/** What node i publishes, as its own backend would. */
async function leaseOf(type: ScaleBackend, i: number): Promise<Lease> {
  const b = await backendFor(type, i);
  return { subnet: subnetOf(i), attrs: { publicIP: nodeExt(i).publicIP, backendType: b.type, backendData: b.backendData, nodeName: nodeName(i) } };
}

export async function measureReconciler(opts: { netns: string; backend: ScaleBackend; peers: number; reps?: number }): Promise<ReconcileFigures> {
  const reps = opts.reps ?? 5;
  await createNodeNamespace(opts.netns);
  try {
    const backend = await backendFor(opts.backend, -1);
    const own = await leaseOf(opts.backend, -1);
    const peers = await Promise.all(Array.from({ length: opts.peers + 1 }, (_, i) => leaseOf(opts.backend, i)));
    const extra = peers.pop()!;
    const spawned: { tool: Tool; purpose: string }[] = [];
    const kernel = new Iproute({ netns: opts.netns, onSpawn: (s) => spawned.push({ tool: s.tool, purpose: s.purpose }) });
    const reconciler = new Reconciler({ logger: pino({ level: 'silent' }), kernel });
    const desiredTimes: number[] = [];

    /** One pass as the agent runs it: desired state over the peers, then the reconciler. */
    const pass = async (set: readonly Lease[]): Promise<PassFigures> => {
      spawned.length = 0;
      const start = performance.now();
      const state = backend.desired(own, set);
      desiredTimes.push(performance.now() - start);
      reconciler.setDesired(state);
      const res = await reconciler.reconcileNow();
      const ms = performance.now() - start;
      if (res.failed) throw new Error(`the kernel refused ${res.failed} changes in ${opts.netns}`);
      return {
        ms,
        writes: spawned.filter((s) => s.purpose === 'write').length,
        reads: spawned.filter((s) => s.purpose === 'read').length,
        applied: res.applied,
      };
    };

    const fromEmpty = await pass(peers);
    const routes = JSON.parse((await ns(['-n', opts.netns, '-json', 'route', 'show', 'proto', '147'])) || '[]') as unknown[];
    const adds: PassFigures[] = [];
    const removes: PassFigures[] = [];
    const noops: PassFigures[] = [];
    for (let r = 0; r < reps; r++) {
      adds.push(await pass([...peers, extra]));
      removes.push(await pass(peers));
      noops.push(await pass(peers));
    }
    return {
      backend: opts.backend,
      peers: opts.peers,
      fromEmpty,
      programmedRoutes: routes.length,
      add: medianPass(adds),
      remove: medianPass(removes),
      noop: medianPass(noops),
      desiredMs: median(desiredTimes),
    };
  } finally {
    await removeNodeNamespace(opts.netns);
  }
}

/** The median time; processes and changes as the most any pass needed. */
function medianPass(passes: readonly PassFigures[]): PassFigures {
  return {
    ms: median(passes.map((p) => p.ms)),
    writes: Math.max(...passes.map((p) => p.writes)),
    reads: Math.max(...passes.map((p) => p.reads)),
    applied: Math.max(...passes.map((p) => p.applied)),
  };
}
