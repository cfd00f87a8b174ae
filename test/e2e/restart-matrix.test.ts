// The data path outlives the agent, on every backend: an established pod flow
// across two nodes loses no packet when the receiving node's agent is
// SIGKILLed and restarted, when it is stopped with SIGTERM and restarted, and
// (bgp) when BIRD itself is SIGKILLed. Then, in the same lab, the route that
// carries the flow is deleted by hand and must come back through kernel
// events. One lab per backend, faults in turn; restart-to-ready and restore
// times are reported, never asserted.
import t, { type Test } from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { BackendType } from '../../src/config/netconf.js';
import type { Lab, LabNode } from '../../src/lab/lab.js';
import { isAlive, sendSignal, waitForExit } from '../../src/core/process.js';
import { freshLab, waitUntil } from './support/lab-fixture.js';
import { PingFlow, startRouteMonitor } from './support/watched-process.js';

/** 50 ms between pings: a gap of a tenth of a second shows as lost packets. */
const INTERVAL_S = 0.05;

/** The pid of the BIRD weft runs for `node` (its control socket lies in the node's run dir). */
function birdPid(lab: Lab, node: LabNode): number | undefined {
  const runDir = `${lab.nodeDir(node)}/run/`;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (/(^|\/)bird$/.test(argv[0] ?? '') && argv.some((a) => a.startsWith(runDir))) return Number(entry);
  }
  return undefined;
}

type Fault = 'agent SIGKILL' | 'agent SIGTERM' | 'BIRD SIGKILL';

/**
 * Runs a flow n1 -> n2 at 50 ms, applies `fault` to n2, waits until n2 is
 * whole again and the flow has carried 40 more replies, and returns what the
 * flow saw and how long n2 took to be ready again.
 */
async function flowAcross(t: Test, lab: Lab, fault: Fault): Promise<{ sent: number; lost: number; readyMs?: number }> {
  const [n1, n2] = lab.nodes as [LabNode, LabNode];
  const from = lab.podsOf(n1)[0]!;
  const to = lab.podsOf(n2)[0]!;
  const flow = PingFlow.start(from.ns, to.ip, { intervalS: INTERVAL_S });
  try {
    const flowing = await waitUntil(() => flow.replies >= 20, { timeoutMs: 30_000 });
    if (!flowing.ok) throw new Error(`the flow ${from.name} -> ${to.name} never started (${flow.replies} replies)`);
    let readyMs: number | undefined;
    if (fault === 'BIRD SIGKILL') {
      const pid = birdPid(lab, n2);
      if (pid === undefined) throw new Error(`no BIRD found for ${n2.name}`);
      sendSignal(pid, 'SIGKILL');
      await waitForExit(pid, 10_000);
      // The agent restarts BIRD; wait for a new one before counting the flow.
      const back = await waitUntil(() => { const p = birdPid(lab, n2); return p !== undefined && p !== pid && isAlive(p); }, { timeoutMs: 60_000 });
      if (!back.ok) throw new Error(`the agent on ${n2.name} did not restart BIRD`);
    } else {
      await lab.stopAgent(n2, fault === 'agent SIGKILL' ? 'SIGKILL' : 'SIGTERM');
      // The flow runs on without an agent for a moment, as during an upgrade.
      const without = flow.replies;
      await waitUntil(() => flow.replies >= without + 10, { timeoutMs: 10_000 });
      readyMs = (await lab.startAgent(n2)).readyMs;
    }
    const after = flow.replies;
    await waitUntil(() => flow.replies >= after + 40, { timeoutMs: 30_000 });
    const result = await flow.stop();
    return { sent: result.transmitted, lost: result.lost.length, readyMs };
  } finally {
    await flow.stop();
  }
}

/**
 * Deletes the route on n1 that carries traffic to n2's pod (weft's, proto
 * 147, or its BIRD's) and waits for `ip monitor` to show it added again.
 * Returns the route and the time from the deletion event to the re-add event.
 */
async function restoreAfterDelete(lab: Lab): Promise<{ dst: string; protocol: string; ms?: number }> {
  const [n1, n2] = lab.nodes as [LabNode, LabNode];
  const podIP = lab.podsOf(n2)[0]!.ip;
  const matching = JSON.parse((await lab.exec(n1, ['ip', '-json', 'route', 'show', 'match', podIP])).stdout || '[]') as { dst: string; protocol?: string }[];
  const route = matching
    .filter((r) => r.protocol === '147' || r.protocol === 'bird')
    .sort((a, b) => Number(b.dst.split('/')[1] ?? 32) - Number(a.dst.split('/')[1] ?? 32))[0];
  if (!route) throw new Error(`no weft or BIRD route on ${n1.name} carries ${podIP}: ${JSON.stringify(matching)}`);
  const monitor = await startRouteMonitor(n1.ns);
  try {
    const since = performance.now();
    await lab.exec(n1, ['ip', 'route', 'del', route.dst, 'proto', route.protocol!]);
    const escaped = route.dst.replace(/[./]/g, (c) => `\\${c}`);
    const seen = await waitUntil(() => {
      const deleted = monitor.find(new RegExp(`^Deleted ${escaped} `), since);
      const added = deleted && monitor.find(new RegExp(`^${escaped} `), deleted.at);
      return deleted && added ? added.at - deleted.at : undefined;
    }, { timeoutMs: 20_000, intervalMs: 20 });
    return { dst: route.dst, protocol: route.protocol!, ms: seen.value === undefined ? undefined : Math.round(seen.value) };
  } finally {
    await monitor.stop();
  }
}

const BACKENDS: { backend: BackendType; faults: Fault[] }[] = [
  { backend: 'host-gw', faults: ['agent SIGKILL', 'agent SIGTERM'] },
  { backend: 'vxlan', faults: ['agent SIGKILL', 'agent SIGTERM'] },
  { backend: 'udp', faults: ['agent SIGKILL', 'agent SIGTERM'] },
  { backend: 'bgp', faults: ['agent SIGKILL', 'agent SIGTERM', 'BIRD SIGKILL'] },
];

for (const { backend, faults } of BACKENDS) {
  t.test(`${backend}: an established flow survives ${faults.join(', ')}; a deleted route comes back`, async (t) => {
    const lab = await freshLab(t, { name: `rs${backend.replace('-', '')}`, nodes: 2, podsPerNode: 1, backend });
    const reachable = await lab.pingMatrix();
    t.ok(reachable.ok, 'pods reach each other before any fault');
    for (const fault of faults) {
      const r = await flowAcross(t, lab, fault);
      t.comment(`${backend}, ${fault}: ${r.lost} of ${r.sent} lost${r.readyMs !== undefined ? `; restart to /readyz ${r.readyMs} ms` : ''}`);
      t.equal(r.lost, 0, `${fault}: no packet lost (${r.sent} sent at ${INTERVAL_S * 1000} ms)`);
    }
    const restore = await restoreAfterDelete(lab);
    t.comment(`${backend}: route ${restore.dst} (proto ${restore.protocol}) deleted by hand, re-added ${restore.ms ?? 'never'} ms after the deletion event`);
    t.not(restore.ms, undefined, `the route to the peer's pods (${restore.dst}) is back, seen through kernel events`);
    t.ok((await lab.pingMatrix()).ok, 'pods reach each other after the restore');
  });
}
