// A three-member etcd losing one member at a time, as production etcd does:
// the leader is SIGKILLed (a node joins meanwhile) and restarted, then a
// follower is SIGKILLed (a node leaves meanwhile) and restarted, then two
// members go at once for longer than the lease TTL (the quorum is lost:
// every /readyz names etcd, /healthz stays 200, the routes stay exactly as
// they were, no lease expires without a leader) and come back (every
// agent ready again, its watch resumed without a re-list). Throughout,
// the agents renew their short leases without re-acquiring them, every other
// agent's routes follow the join and the leave, and established pod flows
// across nodes lose no packet. The loss in each fault's window is reported.
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import type { Lab, LabNode } from '../../src/lab/lab.js';
import { freshLab, routesOf, until, waitUntil } from './support/lab-fixture.js';
import { PingFlow } from './support/watched-process.js';

/**
 * Short enough that renewals happen during the test (every ~10 s), long
 * enough that a renewal delayed by an election on a loaded machine still
 * lands before the lease expires.
 */
const LEASE_TTL = '15s';
/** How long the quorum stays lost: longer than the lease TTL. */
const OUTAGE_MS = 20_000;

async function counter(lab: Lab, node: LabNode, name: string): Promise<number | undefined> {
  const { status, body } = await lab.agentHttp(node, '/metrics');
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(body);
  return status === 200 && m ? Number(m[1]) : undefined;
}

function counters(lab: Lab, nodes: readonly LabNode[], name: string): Promise<(number | undefined)[]> {
  return Promise.all(nodes.map((n) => counter(lab, n, name)));
}

/** The counter on every node, asking again while some agent is too busy to answer. */
function countersOfAll(lab: Lab, nodes: readonly LabNode[], name: string): Promise<number[]> {
  return until(`${name} from every agent`, async () => {
    const values = await counters(lab, nodes, name);
    return values.every((v) => v !== undefined) ? (values as number[]) : undefined;
  });
}

/** The agent's weft_etcd_requests_total, by call. */
async function etcdRequests(lab: Lab, node: LabNode): Promise<Record<string, number>> {
  const { body } = await lab.agentHttp(node, '/metrics');
  return Object.fromEntries([...body.matchAll(/^weft_etcd_requests_total\{call="(\w+)"\} (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
}

/** b - a, per call, only the calls that changed. */
function requestDelta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.keys(b).filter((k) => b[k] !== (a[k] ?? 0)).map((k) => [k, b[k]! - (a[k] ?? 0)]));
}

/** True when every node in `nodes` has (or, `present` false, has not) a route to `subnet`. */
async function routesShow(lab: Lab, nodes: readonly LabNode[], subnet: string, present: boolean): Promise<boolean> {
  const all = await Promise.all(nodes.map((n) => routesOf(lab, n)));
  return all.every((routes) => routes.some((r) => r.dst === subnet) === present);
}

t.test('etcd with 3 members: leader and follower SIGKILLed while nodes join and leave', async (t) => {
  const lab = await freshLab(t, { name: 'et2', nodes: 3, podsPerNode: 1, backend: 'host-gw', etcdMembers: 3, agentArgs: ['--lease-ttl', LEASE_TTL] });
  t.equal(lab.etcdEndpoints.length, 3, 'agents are given all three endpoints');
  const base = [...lab.nodes];
  const pods = base.map((n) => lab.podsOf(n)[0]!);
  const flows = pods.map((p, i) => ({ name: `${p.name} -> ${pods[(i + 1) % pods.length]!.name}`, flow: PingFlow.start(p.ns, pods[(i + 1) % pods.length]!.ip, { intervalS: 0.05 }) }));
  t.teardown(() => Promise.all(flows.map((f) => f.flow.stop())));
  const flowing = await waitUntil(() => flows.every((f) => f.flow.replies >= 20), { timeoutMs: 30_000 });
  t.ok(flowing.ok, 'the flows are established');

  const windows: { fault: string; from: number[]; to: number[] }[] = [];
  const mark = (): number[] => flows.map((f) => f.flow.lastSeq);
  const during = async (fault: string, fn: () => Promise<void>): Promise<void> => {
    const from = mark();
    await fn();
    // 20 more replies on every flow: what was lost in the window is known by then.
    const at = flows.map((f) => f.flow.replies);
    await waitUntil(() => flows.every((f, i) => f.flow.replies >= at[i]! + 20), { timeoutMs: 30_000 });
    windows.push({ fault, from, to: mark() });
  };

  const renewalsBefore = await countersOfAll(lab, base, 'weft_lease_renewals_total');
  let joined: LabNode | undefined;
  let renewedWithoutLeader = false;
  const leader = await lab.etcdLeader();
  if (!leader) throw new Error('the cluster has no leader');
  await during(`leader ${leader.name} SIGKILLed, node joins`, async () => {
    await lab.killEtcdMember(leader.name);
    joined = await lab.addNode();
    const seen = await waitUntil(() => routesShow(lab, base, joined!.subnet!, true), { timeoutMs: 30_000, intervalMs: 200 });
    t.ok(seen.ok, `with the leader down, ${joined.name} joins: ${joined.subnet} in the routes of ${base.map((n) => n.name).join(', ')}`);
    // A renewal on every agent while the leader is down.
    const renewed = await waitUntil(async () => (await counters(lab, base, 'weft_lease_renewals_total')).every((c, i) => c !== undefined && c > renewalsBefore[i]!), { timeoutMs: 45_000, intervalMs: 500 });
    renewedWithoutLeader = renewed.ok;
  });
  t.ok(renewedWithoutLeader, 'every agent renews its lease while the leader is down');
  await during(`${leader.name} restarted`, () => lab.restartEtcdMember(leader.name));

  const leaderNow = await waitUntil(() => lab.etcdLeader(), { timeoutMs: 30_000, intervalMs: 500 });
  const follower = lab.etcdMembers.find((m) => m.running && m.name !== leaderNow.value?.name)!;
  const others = [...base];
  await during(`follower ${follower.name} SIGKILLed, node leaves`, async () => {
    await lab.killEtcdMember(follower.name);
    // The node's agent goes; its lease expires after the TTL and every other agent drops its route.
    await lab.stopAgent(joined!, 'SIGKILL');
    const gone = await waitUntil(() => routesShow(lab, others, joined!.subnet!, false), { timeoutMs: 60_000, intervalMs: 200 });
    t.ok(gone.ok, `with a follower down, ${joined!.name} leaves: ${joined!.subnet} gone from the routes of ${others.map((n) => n.name).join(', ')}`);
  });
  await during(`${follower.name} restarted`, () => lab.restartEtcdMember(follower.name));

  // Quorum lost: two of the three members SIGKILLed, then both back.
  const routesBefore = await Promise.all(base.map((n) => routesOf(lab, n)));
  const victims = lab.etcdMembers.filter((m) => m.running).slice(0, 2);
  let atReturn: Record<string, number>[] = [];
  let backAt: Record<string, number>[] = [];
  await during(`quorum lost (${victims.map((m) => m.name).join(' and ')} SIGKILLed) for ${OUTAGE_MS / 1000} s, longer than the lease TTL, and back`, async () => {
    await Promise.all(victims.map((m) => lab.killEtcdMember(m.name)));
    const lostAt = Date.now();
    const saying = await waitUntil(
      async () => (await Promise.all(base.map((n) => lab.agentHttp(n, '/readyz')))).every((r) => r.status === 503 && /"part":"etcd"/.test(r.body)),
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    t.ok(saying.ok, "with the quorum lost, every agent's /readyz is 503 and names the etcd part");
    // etcd stays unusable for longer than the lease TTL: no lease may expire without a leader, and nothing may change.
    await sleep(Math.max(0, lostAt + OUTAGE_MS - Date.now()));
    t.same((await Promise.all(base.map((n) => lab.agentHttp(n, '/healthz')))).map((r) => r.status), base.map(() => 200), '/healthz stays 200 on every agent');
    t.same(await Promise.all(base.map((n) => routesOf(lab, n))), routesBefore, `after ${OUTAGE_MS / 1000} s without a quorum (the lease TTL is ${LEASE_TTL}), the data plane is exactly as it was`);
    atReturn = await Promise.all(base.map((n) => etcdRequests(lab, n)));
    await Promise.all(victims.map((m) => lab.restartEtcdMember(m.name)));
    const ready = await waitUntil(async () => (await Promise.all(base.map((n) => lab.agentReady(n)))).every(Boolean), { timeoutMs: 60_000, intervalMs: 200 });
    backAt = await Promise.all(base.map((n) => etcdRequests(lab, n)));
    t.ok(ready.ok, 'every agent is ready again once the quorum is back');
  });
  const recovery = base.map((_, i) => requestDelta(atReturn[i]!, backAt[i]!));
  t.comment(`etcd requests per agent on recovery from quorum loss (members restarted until every agent ready): ${base.map((n, i) => `${n.name} ${JSON.stringify(recovery[i])}`).join('; ')}`);
  t.same(recovery.map((r) => r.list ?? 0), base.map(() => 0), 'no agent re-lists the leases on recovery: its watch resumes from its revision');

  const results = await Promise.all(flows.map((f) => f.flow.stop()));
  for (const w of windows) {
    const lost = results.map((r, i) => r.lost.filter((s) => s > w.from[i]! && s <= w.to[i]!).length);
    const sent = w.to.map((to, i) => to - w.from[i]!);
    t.comment(`${w.fault}: ${lost.reduce((a, b) => a + b, 0)} of ${sent.reduce((a, b) => a + b, 0)} packets lost over ${flows.length} flows at 50 ms`);
  }
  t.same(results.map((r, i) => ({ flow: flows[i]!.name, lost: r.lost })), flows.map((f) => ({ flow: f.name, lost: [] })), 'the established flows lose no packet through all five faults');
  const renewalsAfter = await countersOfAll(lab, base, 'weft_lease_renewals_total');
  t.comment(`lease renewals per agent: ${base.map((n, i) => `${n.name} ${renewalsBefore[i]} -> ${renewalsAfter[i]}`).join(', ')}`);
  t.same(await countersOfAll(lab, base, 'weft_lease_reacquisitions_total'), base.map(() => 0), 'no agent re-acquired its lease');
  t.ok((await lab.pingMatrix({ pods })).ok, `the pods of ${base.map((n) => n.name).join(', ')} reach each other after the faults`);
});
