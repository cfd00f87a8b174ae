// How fast a joining node's subnet spreads: from its lease appearing in etcd
// to the route to it in every other running node's kernel, per address
// family. For the e2e tests (which assert the route arrived) and the
// benchmarks (which report the time).
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cidr, type Family } from '../core/cidr.js';
import type { Lab } from './lab.js';
import { escapeRegExp, startEtcdWatch, startRouteMonitor, type LineRecorder } from './line-recorder.js';
import { nodeSubnet, type LabNode } from './state.js';

export interface JoinTiming {
  node: LabNode;
  /**
   * Per family the lab runs: milliseconds from the node's lease appearing in
   * etcd to its pod subnet's route in the last of the peers' kernels;
   * undefined when some peer never reported that route.
   */
  leaseToRoutesMs: Map<Family, number | undefined>;
}

/**
 * Adds a node with `add` and times its join per address family: an etcd
 * watch sees its lease (one key for both families), `ip monitor route` on
 * every peer that runs an agent sees the route to its subnet of each family
 * (any backend: the line starts with the subnet). Waits up to `timeoutMs`
 * for the observers; the caller asserts on what arrived.
 */
export async function timeJoin(lab: Lab, add: () => Promise<LabNode>, opts: { timeoutMs?: number } = {}): Promise<JoinTiming> {
  const peers = lab.nodes.filter((n) => lab.agentRunning(n));
  const recorders: LineRecorder[] = [];
  try {
    const leases = await startEtcdWatch({ netns: lab.underlayNs, endpoint: lab.etcdEndpoint, prefix: `${lab.etcdPrefix}/`, probeKey: `${lab.etcdPrefix}/join-watch-probe` });
    recorders.push(leases);
    const monitors = await Promise.all(peers.map((p) => startRouteMonitor(p.ns)));
    recorders.push(...monitors);
    const node = await add();
    const leaseRe = new RegExp(`^${escapeRegExp(`${lab.etcdPrefix}/subnets/`)}.*${escapeRegExp(Cidr.parse(node.subnet!).toKey())}`);
    const routeRe = new Map(lab.families.map((f) => [f, new RegExp(`^${escapeRegExp(nodeSubnet(node, f) ?? '?')} `)]));
    const arrived = (): boolean => !!leases.find(leaseRe) && [...routeRe.values()].every((re) => monitors.every((m) => m.find(re)));
    const deadline = performance.now() + (opts.timeoutMs ?? 30_000);
    while (!arrived() && performance.now() < deadline) await sleep(100);
    const leaseAt = leases.find(leaseRe)?.at;
    const leaseToRoutesMs = new Map<Family, number | undefined>();
    for (const [family, re] of routeRe) {
      const at = monitors.map((m) => m.find(re)?.at);
      const all = at.every((a): a is number => a !== undefined);
      leaseToRoutesMs.set(family, leaseAt !== undefined && all ? Math.round(Math.max(...at) - leaseAt) : undefined);
    }
    return { node, leaseToRoutesMs };
  } finally {
    await Promise.all(recorders.map((r) => r.stop()));
  }
}
