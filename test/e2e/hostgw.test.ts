// The agent on the host-gw backend, end to end in the namespace lab: real
// etcd, real agents (dist/src/cli/main.js), pods wired by the CNI plugins.
// Each test has its own lab (hg1, hg2, ...), so one failure does not cascade.
// Times are measured and reported with t.comment, never asserted: the
// machine is shared, so every wait is a condition with a generous deadline.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { dirname, join } from 'node:path';
import { Lab, agentEntry, type LabNode } from '../../src/lab/lab.js';
import { commandLine } from '../../src/core/process.js';
import { WEFT_ROUTE_PROTO } from '../../src/dataplane/state.js';
import { freshLab, routesOf, rssKiB, runUnhooked, timeJoin, unusedSubnets, waitUntil, weftCli } from './support/lab-fixture.js';
import { PingFlow, startRouteMonitor, type LineRecorder } from './support/watched-process.js';

const PREFIX = '/weft/network';
const NETWORK = '10.244.0.0/16';
const PROTO = String(WEFT_ROUTE_PROTO);
/** Generous: agents on a loaded 2-core machine. */
const CONVERGE_MS = 30_000;
/** Every lab agent's --healthz-addr, inside its node namespace. */
const HEALTHZ = '127.0.0.1:10270';

interface HostGwRoute {
  dst: string;
  via: string;
  dev: string;
}

function leaseKey(subnet: string): string {
  return `${PREFIX}/subnets/${subnet.replace('/', '-')}`;
}

const byDst = (a: HostGwRoute, b: HostGwRoute): number => a.dst.localeCompare(b.dst, 'en', { numeric: true });

/** The routes weft owns on a node (proto 147), in host-gw terms. */
async function weftRoutes(lab: Lab, node: LabNode): Promise<HostGwRoute[]> {
  return (await routesOf(lab, node))
    .filter((r) => r.protocol === PROTO)
    .map((r) => ({ dst: r.dst, via: r.gateway ?? '', dev: r.dev ?? '' }))
    .sort(byDst);
}

/** host-gw's promise: one route per peer, `peerSubnet via peerIP dev eth0`; `extra` are other leases' routes. */
function expectedRoutes(node: LabNode, peers: readonly LabNode[], extra: readonly HostGwRoute[] = []): HostGwRoute[] {
  return [
    ...peers.filter((p) => p !== node).map((p) => ({ dst: p.subnet ?? '?', via: p.underlayIP, dev: 'eth0' })),
    ...extra,
  ].sort(byDst);
}

/** Waits until every node in `nodes` holds exactly its expected weft routes; returns the wait. */
async function waitConverged(lab: Lab, nodes: readonly LabNode[], peers: readonly LabNode[] = nodes, extra: readonly HostGwRoute[] = []) {
  return waitUntil(
    async () => {
      for (const n of nodes) if (JSON.stringify(await weftRoutes(lab, n)) !== JSON.stringify(expectedRoutes(n, peers, extra))) return false;
      return true;
    },
    { timeoutMs: CONVERGE_MS, intervalMs: 100 },
  );
}

/** Asserts (with a readable diff) what waitConverged waited for. */
async function assertRoutes(t: Test, lab: Lab, nodes: readonly LabNode[], peers: readonly LabNode[] = nodes, extra: readonly HostGwRoute[] = [], why = ''): Promise<void> {
  for (const n of nodes) t.same(await weftRoutes(lab, n), expectedRoutes(n, peers, extra), `${n.name}: ${why || `exactly ${peers.filter((p) => p !== n).length + extra.length} weft routes`}`);
}

function reportMatrix(t: Test, matrix: Awaited<ReturnType<Lab['pingMatrix']>>, what: string): void {
  const failed = matrix.rows.filter((r) => !r.ok).map((r) => `${r.from}>${r.to}`);
  t.ok(matrix.ok, `${what}: ${matrix.rows.length - failed.length}/${matrix.rows.length} pod pairs reachable${failed.length ? ` (failed: ${failed.join(' ')})` : ''}`);
}

async function metric(lab: Lab, node: LabNode, name: string): Promise<number | undefined> {
  const r = await lab.exec(node, ['curl', '-fsS', '-m', '5', `http://${HEALTHZ}/metrics`], { check: false });
  const m = new RegExp(`^weft_${name} (\\S+)$`, 'm').exec(r.stdout);
  return m ? Number(m[1]) : undefined;
}

t.test('3 nodes x 2 pods: full pod matrix, exactly N-1 host-gw routes per node', async (t) => {
  const lab = await freshLab(t, { name: 'hg1', nodes: 3, podsPerNode: 2 });
  t.comment(`agent start to /readyz: ${lab.nodes.map((n) => `${n.name} ${n.agentReadyMs} ms`).join(', ')}`);

  const subnets = lab.nodes.map((n) => n.subnet ?? '');
  t.equal(new Set(subnets).size, 3, `three distinct subnets: ${subnets.join(' ')}`);
  for (const s of subnets) t.match(s, /^10\.244\.\d+\.0\/24$/, `${s} is a /24 of ${NETWORK}`);
  const leases = await lab.etcdList(`${PREFIX}/subnets/`);
  t.same(
    [...leases].map(([k, v]) => [k, (JSON.parse(v) as { PublicIP: string }).PublicIP]).sort(),
    lab.nodes.map((n) => [leaseKey(n.subnet!), n.underlayIP]).sort(),
    'one lease per node in etcd, carrying its subnet and underlay address',
  );

  const converged = await waitConverged(lab, lab.nodes);
  t.ok(converged.ok, 'every node converges on N-1 routes');
  t.comment(`routes complete ${converged.ms} ms after the lab reported ready`);
  await assertRoutes(t, lab, lab.nodes);
  for (const n of lab.nodes) {
    const cni = (await routesOf(lab, n)).find((r) => r.dst === n.subnet);
    t.equal(cni?.dev, 'cni0', `${n.name}: its own subnet stays on cni0, no weft route for it`);
  }

  const matrix = await lab.pingMatrix();
  t.equal(matrix.rows.length, 30, '6 pods, 30 ordered pairs');
  reportMatrix(t, matrix, 'full matrix');
});

t.test('a 4th node joins a dual-stack cluster: every pod reaches its pods in both families, every node routes to it', async (t) => {
  const lab = await freshLab(t, { name: 'hg2', nodes: 3, podsPerNode: 2, families: [4, 6] });
  const old = [...lab.nodes];
  t.ok((await waitConverged(lab, old)).ok, 'the first three converge');

  // From the lease appearing in etcd to the route in every peer's kernel, per family, as the events arrive.
  const { node: n4, leaseToRoutesMs } = await timeJoin(lab, () => lab.addNode());
  t.ok(n4.subnet && !old.some((n) => n.subnet === n4.subnet), `n4 leased a new subnet ${n4.subnet}`);
  t.comment(`n4 agent start to /readyz: ${n4.agentReadyMs} ms`);
  const all = [...old, n4];
  const converged = await waitConverged(lab, all);
  t.ok(converged.ok, 'all four converge');
  await assertRoutes(t, lab, all);
  t.same([...leaseToRoutesMs].filter(([, ms]) => ms === undefined).map(([f]) => `IPv${f}`), [], "every peer's kernel reported n4's route in each family");
  t.comment(`join -> route: lease written to route on all peers ${[...leaseToRoutesMs].map(([f, ms]) => `IPv${f} ${ms} ms`).join(', ')}`);

  const matrices = await lab.pingMatrices();
  t.same(matrices.map((m) => [m.family, m.rows.length]), [[4, 56], [6, 56]], '8 pods, 56 ordered pairs in each family');
  for (const m of matrices) reportMatrix(t, m, `IPv${m.family} matrix with the new node`);
});

t.test('an agent stopped (SIGTERM) and its lease deleted: peers drop its route, its own routes stay', async (t) => {
  const lab = await freshLab(t, { name: 'hg3', nodes: 3, podsPerNode: 2 });
  const [n1, n2, n3] = lab.nodes as [LabNode, LabNode, LabNode];
  t.ok((await waitConverged(lab, lab.nodes)).ok, 'converged');
  const n3Subnet = n3.subnet!;

  await lab.stopAgent(n3, 'SIGTERM', { timeoutMs: 20_000 });
  t.notOk(lab.agentRunning(n3), 'the agent on n3 exited');
  await assertRoutes(t, lab, [n3], lab.nodes, [], 'SIGTERM keeps the stopped node\'s routes');
  await assertRoutes(t, lab, [n1, n2], lab.nodes, [], 'peers keep the route while the lease lives');
  reportMatrix(t, await lab.pingMatrix({ pods: [...lab.podsOf(n1), ...lab.podsOf(n3)] }), 'pods keep working while n3\'s agent is down');

  t.equal(await lab.etcdDel(leaseKey(n3Subnet)), 1, `lease ${n3Subnet} deleted`);
  const dropped = await waitUntil(
    async () => {
      for (const n of [n1, n2]) if ((await weftRoutes(lab, n)).some((r) => r.dst === n3Subnet)) return false;
      return true;
    },
    { timeoutMs: CONVERGE_MS, intervalMs: 50 },
  );
  t.ok(dropped.ok, 'peers drop the route to the deleted lease');
  t.comment(`lease deleted -> route gone on both peers: ${dropped.ms} ms`);
  await assertRoutes(t, lab, [n1, n2], [n1, n2], [], 'peers route only to each other');
  await assertRoutes(t, lab, [n3], lab.nodes, [], 'n3 still holds its own routes after the peers dropped it');

  // Restarting n3 takes its subnet back from subnet.env, and the peers follow.
  await lab.startAgent(n3);
  t.equal(n3.subnet, n3Subnet, 'the restarted agent leases the same subnet again');
  t.ok((await waitConverged(lab, lab.nodes)).ok, 'peers route to n3 again');
  reportMatrix(t, await lab.pingMatrix(), 'full matrix after n3 is back');
});

t.test('kill -9 of an agent and restart: same subnet, an established ping flow loses no packets', async (t) => {
  const lab = await freshLab(t, { name: 'hg4', nodes: 3, podsPerNode: 2 });
  const [n1, n2] = lab.nodes as [LabNode, LabNode, LabNode];
  t.ok((await waitConverged(lab, lab.nodes)).ok, 'converged');
  const leasesBefore = await lab.etcdList(`${PREFIX}/subnets/`);
  const subnetBefore = n2.subnet;
  const from = lab.podsOf(n1)[0]!;
  const to = lab.podsOf(n2)[0]!;

  const monitors: LineRecorder[] = [];
  t.teardown(() => Promise.all(monitors.map((m) => m.stop())));
  for (const n of [n1, n2]) monitors.push(await startRouteMonitor(n.ns));
  const flow = PingFlow.start(from.ns, to.ip, { intervalS: 0.05 });
  t.teardown(() => flow.stop());
  const flowing = await waitUntil(() => flow.replies >= 20, { timeoutMs: 20_000 });
  t.ok(flowing.ok, `the flow ${from.name} -> ${to.name} is established`);

  const killedAt = performance.now();
  await lab.stopAgent(n2, 'SIGKILL');
  t.notOk(lab.agentRunning(n2), 'the agent on n2 is dead');
  await assertRoutes(t, lab, [n2], lab.nodes, [], 'a killed agent leaves its routes in place');
  const { readyMs } = await lab.startAgent(n2);
  t.comment(`restart after kill -9: start to /readyz ${readyMs} ms`);
  t.equal(n2.subnet, subnetBefore, `same subnet after restart (${subnetBefore})`);
  t.same(await lab.etcdList(`${PREFIX}/subnets/`), leasesBefore, 'no new lease in etcd: the old one was reused');

  // Keep the flow going across the restarted agent's first reconciles.
  const after = flow.replies;
  t.ok((await waitUntil(() => flow.replies >= after + 40, { timeoutMs: 20_000 })).ok, 'the flow keeps running after the restart');
  const result = await flow.stop();
  t.comment(`ping flow across the kill and restart: ${result.transmitted} sent, ${result.received} received`);
  t.ok(result.transmitted > 60, 'the flow ran throughout');
  t.same(result.lost, [], 'no packet lost');
  t.equal(result.duplicates, 0, 'no duplicates');

  for (const [i, m] of monitors.entries()) {
    const deleted = m.filter(new RegExp(`^Deleted .* proto ${PROTO}`), killedAt).map((l) => l.line);
    t.same(deleted, [], `${[n1, n2][i]!.name}: no weft route was deleted across the kill and restart`);
  }
  await assertRoutes(t, lab, lab.nodes);
});

t.test('a weft route deleted or changed by hand is restored by the event path', async (t) => {
  // A 600 s periodic resync: a restore within seconds can only come from kernel events.
  const lab = await freshLab(t, { name: 'hg5', nodes: 3, podsPerNode: 1, agentArgs: ['--resync', '600s'] });
  const [n1, n2, n3] = lab.nodes as [LabNode, LabNode, LabNode];
  t.ok((await waitConverged(lab, lab.nodes)).ok, 'converged');
  const monitor = await startRouteMonitor(n1.ns);
  t.teardown(() => monitor.stop());

  const restoreTimes: string[] = [];
  for (const peer of [n2, n3, n2]) {
    const dst = peer.subnet!;
    const since = performance.now();
    await lab.exec(n1, ['ip', 'route', 'del', dst, 'proto', PROTO]);
    const back = await waitUntil(async () => (await weftRoutes(lab, n1)).some((r) => r.dst === dst), { timeoutMs: 10_000, intervalMs: 10 });
    t.ok(back.ok, `route to ${peer.name} (${dst}) restored after deletion`);
    // The monitor's lines may trail the polled state by a moment.
    const escaped = dst.replace(/\./g, '\\.');
    const seen = await waitUntil(() => {
      const deleted = monitor.find(new RegExp(`^Deleted ${escaped} `), since);
      const added = deleted && monitor.find(new RegExp(`^${escaped} via`), deleted.at);
      return deleted && added ? { ms: added.at - deleted.at } : undefined;
    }, { timeoutMs: 5000 });
    restoreTimes.push(seen.value ? `${seen.value.ms.toFixed(1)} ms` : `~${back.ms} ms (polled)`);
  }
  t.comment(`weft route deleted by hand -> restored (kernel events): ${restoreTimes.join(', ')}`);
  await assertRoutes(t, lab, lab.nodes, lab.nodes, [], 'restored exactly as before');

  // A weft route pointed elsewhere by hand is put back too.
  await lab.exec(n1, ['ip', 'route', 'replace', n2.subnet!, 'via', n3.underlayIP, 'dev', 'eth0', 'proto', PROTO]);
  const fixed = await waitUntil(async () => (await weftRoutes(lab, n1)).some((r) => r.dst === n2.subnet && r.via === n2.underlayIP), {
    timeoutMs: 10_000,
    intervalMs: 10,
  });
  t.ok(fixed.ok, 'a weft route changed by hand is corrected');
  t.comment(`changed route corrected in ~${fixed.ms} ms (polled)`);
  await assertRoutes(t, lab, lab.nodes);
  reportMatrix(t, await lab.pingMatrix(), 'matrix after the repairs');
});

t.test('routes weft does not own are left alone through reconciles and a restart', async (t) => {
  // A 1 s resync: several periodic reconciles run while the foreign routes are in place.
  const lab = await freshLab(t, { name: 'hg6', nodes: 3, podsPerNode: 1, agentArgs: ['--resync', '1s'] });
  const [n1, n2, n3] = lab.nodes as [LabNode, LabNode, LabNode];
  t.ok((await waitConverged(lab, lab.nodes)).ok, 'converged');

  // One outside the cluster network, one inside it (the first subnet, never leased by default).
  await lab.exec(n1, ['ip', 'route', 'add', '203.0.113.0/24', 'via', n2.underlayIP, 'dev', 'eth0']);
  await lab.exec(n1, ['ip', 'route', 'add', '10.244.0.0/24', 'via', n3.underlayIP, 'dev', 'eth0', 'proto', 'static', 'metric', '50']);
  const foreign = async () => (await routesOf(lab, n1)).filter((r) => r.dst === '203.0.113.0/24' || r.dst === '10.244.0.0/24');
  const before = await foreign();
  t.equal(before.length, 2, 'two foreign routes in place');

  // Subnets no node holds, for a fake peer and hand-made weft-protocol routes.
  const [fakeSubnet, straySubnet, staleSubnet] = (await unusedSubnets(lab, 3)) as [string, string, string];

  // A peer appears and goes: reconciles with a real change.
  const fake = { dst: fakeSubnet, via: '192.0.2.50', dev: 'eth0' };
  await lab.etcdPut(leaseKey(fake.dst), JSON.stringify({ PublicIP: fake.via, BackendType: 'host-gw' }));
  t.ok((await waitConverged(lab, lab.nodes, lab.nodes, [fake])).ok, 'a new peer\'s route is added everywhere');
  t.same(await foreign(), before, 'foreign routes untouched after a peer was added');
  await lab.etcdDel(leaseKey(fake.dst));
  t.ok((await waitConverged(lab, lab.nodes)).ok, 'the peer\'s route is removed everywhere');
  t.same(await foreign(), before, 'foreign routes untouched after a peer was removed');

  // A kernel event reconcile, then a few periodic ones.
  await lab.exec(n1, ['ip', 'route', 'del', n2.subnet!, 'proto', PROTO]);
  t.ok((await waitConverged(lab, [n1], lab.nodes)).ok, 'deleted weft route restored');
  await sleep(3000);
  t.same(await foreign(), before, 'foreign routes untouched after event and periodic reconciles');

  // A stray route in weft's protocol is weft's: removed, while the foreign ones stay.
  await lab.exec(n1, ['ip', 'route', 'add', straySubnet, 'via', '192.0.2.52', 'dev', 'eth0', 'proto', PROTO]);
  t.ok((await waitConverged(lab, [n1], lab.nodes)).ok, 'a stray weft-protocol route added by hand is removed');
  t.same(await foreign(), before, 'foreign routes untouched while weft removed its stray route');

  // Restart: the startup reconcile removes a stale weft route, and only that.
  await lab.stopAgent(n1);
  await lab.exec(n1, ['ip', 'route', 'add', staleSubnet, 'via', '192.0.2.51', 'dev', 'eth0', 'proto', PROTO]);
  await lab.startAgent(n1);
  t.ok((await waitConverged(lab, [n1], lab.nodes)).ok, 'the stale weft route left from before the restart is removed');
  await assertRoutes(t, lab, lab.nodes);
  t.same(await foreign(), before, 'foreign routes untouched after an agent restart');
});

t.test('hostile lease values and an off-link peer: agents keep running, the matrix passes, weft leases lists them as invalid', async (t) => {
  const lab = await freshLab(t, { name: 'hg7', nodes: 3, podsPerNode: 2 });
  t.ok((await waitConverged(lab, lab.nodes)).ok, 'converged');

  // Subnets no node holds: writing over a node's real lease would test something else.
  const free = await unusedSubnets(lab, 7);
  const [badJson, badIP, badLength, badBackend, oversize, offLink, canarySubnet] = free as [string, string, string, string, string, string, string];
  const hostile: Record<string, string> = {
    [badJson]: '{"PublicIP": "192.0.2.',
    [badIP]: JSON.stringify({ PublicIP: 'not-an-ip', BackendType: 'host-gw' }),
    '10.99.0.0/24': JSON.stringify({ PublicIP: '192.0.2.60', BackendType: 'host-gw' }),
    [badLength.replace(/\/24$/, '/25')]: JSON.stringify({ PublicIP: '192.0.2.61', BackendType: 'host-gw' }),
    [badBackend]: JSON.stringify({ PublicIP: '192.0.2.62', BackendType: 'no-such-backend' }),
    [oversize]: JSON.stringify({ PublicIP: '192.0.2.63', BackendType: 'host-gw', BackendData: { pad: 'x'.repeat(10_000) } }),
  };
  for (const [subnet, value] of Object.entries(hostile)) await lab.etcdPut(leaseKey(subnet), value);
  // Valid, but host-gw cannot reach it: its PublicIP is not on a connected network.
  await lab.etcdPut(leaseKey(offLink), JSON.stringify({ PublicIP: '198.51.100.77', BackendType: 'host-gw' }));
  // A valid lease written after them: once every node routes it, the others were processed.
  const canary = { dst: canarySubnet, via: '192.0.2.70', dev: 'eth0' };
  await lab.etcdPut(leaseKey(canary.dst), JSON.stringify({ PublicIP: canary.via, BackendType: 'host-gw' }));

  t.ok((await waitConverged(lab, lab.nodes, lab.nodes, [canary])).ok, 'the valid lease after the hostile ones reaches every node');
  await assertRoutes(t, lab, lab.nodes, lab.nodes, [canary], 'no route for any hostile value, none for the off-link peer');
  for (const n of lab.nodes) {
    t.ok(lab.agentRunning(n), `${n.name}: agent still running`);
    t.ok(await lab.agentReady(n), `${n.name}: still ready`);
    const warned = readFileSync(lab.agentLogFile(n), 'utf8').split('\n').some((l) => l.includes(offLink) && l.includes('198.51.100.77') && /vxlan/.test(l));
    t.ok(warned, `${n.name}: warns that host-gw cannot reach ${offLink}, naming it and suggesting vxlan`);
  }
  reportMatrix(t, await lab.pingMatrix(), 'matrix with hostile leases present');

  // The snapshot path too: an agent starting with the hostile keys in place.
  const n1 = lab.nodes[0]!;
  await lab.stopAgent(n1);
  await lab.startAgent(n1);
  t.ok((await waitConverged(lab, [n1], lab.nodes, [canary])).ok, 'a restarted agent lists past the hostile leases');

  const listing = await weftCli(lab, lab.underlayNs, ['leases', '--etcd-endpoints', lab.etcdEndpoint, '--json']);
  t.equal(listing.code, 0, `weft leases exits 0 ${listing.stderr.trim()}`);
  const rows = JSON.parse(listing.stdout || '[]') as Array<{ key: string; invalid?: string; subnet?: string }>;
  for (const subnet of Object.keys(hostile)) {
    const row = rows.find((r) => r.key === leaseKey(subnet));
    t.ok(row?.invalid, `weft leases lists ${subnet} as invalid${row?.invalid ? `: ${row.invalid}` : ''}`);
  }
  t.same(
    rows.filter((r) => !r.invalid).map((r) => r.subnet).sort(),
    [...lab.nodes.map((n) => n.subnet), canary.dst, offLink].sort(),
    'the nodes\' leases, the canary and the off-link peer are listed as valid',
  );
  const table = await weftCli(lab, lab.underlayNs, ['leases', '--etcd-endpoints', lab.etcdEndpoint]);
  t.equal((table.stdout.match(/ invalid: /g) ?? []).length, Object.keys(hostile).length, 'the table marks each hostile entry invalid');
});

/**
 * Runs `body` (ES module code with `Lab` and `lab` = Lab.attach(name) in
 * scope) in a plain node process, so the agents it starts carry none of tap's
 * hooks; prints whatever the body returns as JSON.
 */
async function inPlainNode<T>(name: string, body: string): Promise<T> {
  const script = `const { Lab } = await import(${JSON.stringify(join(dirname(agentEntry()), '..', 'lab', 'lab.js'))});
    const lab = await Lab.attach(${JSON.stringify(name)});
    const result = await (async () => { ${body} })();
    process.stdout.write(JSON.stringify(result ?? null));`;
  const r = await runUnhooked([process.execPath, '--input-type=module', '-e', script], { check: false, timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`lab script failed (exit ${r.code}): ${r.stderr.trim().split('\n').filter((l) => /Error|error/.test(l)).slice(0, 3).join(' | ') || r.stderr.slice(-800)}`);
  return JSON.parse(r.stdout) as T;
}

t.test('agent footprint: RSS with 3 peers, time from start to /readyz', async (t) => {
  // Measured on agents started without tap's process/coverage hooks (NODE_OPTIONS),
  // which tap re-adds to every process a test spawns and which cost memory and start-up time.
  await Lab.destroy('hg8');
  t.teardown(() => Lab.destroy('hg8'));
  const up = await runUnhooked([process.execPath, agentEntry(), 'lab', 'up', '--name', 'hg8', '--nodes', '4', '--pods', '1'], { check: false, timeoutMs: 180_000 });
  t.equal(up.code, 0, `weft lab up ${up.stderr.trim()}`);
  let lab = await Lab.attach('hg8');
  t.comment(`start to /readyz (4 agents starting together): ${lab.nodes.map((n) => `${n.name} ${n.agentReadyMs} ms`).join(', ')}`);
  t.ok((await waitConverged(lab, lab.nodes)).ok, 'converged');
  const restarts = await inPlainNode<number[]>(
    'hg8',
    `const ms = [];
     for (let i = 0; i < 3; i++) { await lab.stopAgent('n1'); ms.push((await lab.startAgent('n1')).readyMs); }
     return ms;`,
  );
  t.comment(`start to /readyz (one agent, 3 peers in etcd), 3 restarts: ${restarts.map((ms) => `${ms} ms`).join(', ')}`);
  lab = await Lab.attach('hg8');
  t.ok((await waitConverged(lab, lab.nodes)).ok, 'converged after the restarts');
  await sleep(2000); // past start-up, into the steady state
  const rss: string[] = [];
  for (const n of lab.nodes) {
    t.equal(await metric(lab, n, 'peers'), 3, `${n.name}: the agent reports 3 peers`);
    const pid = n.agentPid ?? 0;
    t.match(commandLine(pid), /main\.js agent /, `${n.name}: pid ${pid} is the agent itself`);
    t.notMatch(readFileSync(`/proc/${pid}/environ`, 'utf8'), /NODE_OPTIONS=/, `${n.name}: the agent runs without tap's hooks`);
    const kib = rssKiB(pid);
    t.ok(kib !== undefined && kib > 0, `${n.name}: agent VmRSS readable`);
    rss.push(`${n.name} ${((kib ?? 0) / 1024).toFixed(1)} MiB`);
  }
  t.comment(`agent RSS with 3 peers: ${rss.join(', ')}`);
});
