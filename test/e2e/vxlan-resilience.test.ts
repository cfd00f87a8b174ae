// What has bitten flannel's vxlan users, on a 3-node vxlan lab: an agent
// restart must not flap the device or drop an established flow; a device, FDB
// entry or neighbour deleted by hand comes back with every peer's entries;
// a peer that leaves takes its entries (and its firewall opening) with it.
import t from 'tap';
import { readFile, stat } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lab, LabNode } from '../../src/lab/lab.js';
import { freshLab, waitUntil } from './support/lab-fixture.js';
import { LineRecorder, PingFlow } from './support/watched-process.js';
import { VXLAN_DEV, labVxlanProblems, leaseOf, leasesOf, vxlanProblems, vxlanView, type NodeLease } from './support/vxlan.js';

/** Problems of one node's tunnel against the current leases ([] when complete). */
async function nodeProblems(lab: Lab, node: LabNode): Promise<string[]> {
  const leases = await leasesOf(lab);
  const peers = lab.nodes.filter((n) => n !== node && leases.some((l) => l.publicIP === n.underlayIP)).map((n) => leaseOf(leases, n));
  return vxlanProblems(await vxlanView(lab, node), leaseOf(leases, node), peers);
}

async function logSize(lab: Lab, node: LabNode): Promise<number> {
  return (await stat(lab.agentLogFile(node))).size;
}

async function logSince(lab: Lab, node: LabNode, offset: number): Promise<string> {
  return (await readFile(lab.agentLogFile(node))).subarray(offset).toString('utf8');
}

/** Waits until the flow has `n` more replies than now (bounded). */
async function moreReplies(flow: PingFlow, n: number): Promise<boolean> {
  const target = flow.replies + n;
  return (await waitUntil(() => flow.replies >= target, { timeoutMs: 20_000 })).ok;
}

t.test('vxlan resilience on a 3-node lab', async (t) => {
  const lab = await freshLab(t, { name: 'vx5', nodes: 3, podsPerNode: 1, backend: 'vxlan' });
  const [n1, n2, n3] = lab.nodes as [LabNode, LabNode, LabNode];
  const converged = await waitUntil(async () => (await labVxlanProblems(lab)).length === 0, { timeoutMs: 30_000, intervalMs: 200 });
  t.ok(converged.ok, 'the tunnel is complete on every node');
  if (!converged.ok) return;

  t.test('agent restart keeps the device and loses no packet of an established flow', async (t) => {
    const before = await Promise.all(lab.nodes.map((n) => vxlanView(lab, n)));
    const leasesBefore = await leasesOf(lab);
    const flow = PingFlow.start(lab.podsOf(n1)[0]!.ns, lab.podsOf(n2)[0]!.ip, { intervalS: 0.05 });
    t.teardown(() => flow.stop().then(() => undefined));
    t.ok(await moreReplies(flow, 20), 'the flow runs before the restart');

    for (const node of [n1, n2]) {
      const offset = await logSize(lab, node);
      const started = performance.now();
      await lab.stopAgent(node, 'SIGTERM');
      const stoppedMs = performance.now() - started;
      const { readyMs } = await lab.startAgent(node);
      t.comment(`${node.name}: agent stopped in ${Math.round(stoppedMs)} ms, ready again ${readyMs} ms after start`);
      const log = await logSince(lab, node, offset);
      t.notMatch(log, /"link (add|del)|link del|link add/, `${node.name}: the restarted agent neither deleted nor re-created a link`);
      t.ok(await moreReplies(flow, 20), `the flow still runs after ${node.name}'s restart`);
    }
    // The peers' view of the restarted nodes must not have flapped either.
    const result = await flow.stop();
    t.comment(`ping flow: ${result.transmitted} sent, ${result.received} received across two agent restarts`);
    t.ok(result.transmitted > 40, 'the flow ran throughout');
    t.same(result.lost, [], 'no request went unanswered');

    const after = await Promise.all(lab.nodes.map((n) => vxlanView(lab, n)));
    for (const [i, node] of lab.nodes.entries()) {
      t.equal(after[i]!.link?.ifindex, before[i]!.link?.ifindex, `${node.name}: ${VXLAN_DEV} kept its ifindex`);
      t.equal(after[i]!.link?.mac, before[i]!.link?.mac, `${node.name}: ${VXLAN_DEV} kept its MAC`);
    }
    const leasesAfter = await leasesOf(lab);
    for (const node of lab.nodes) {
      t.equal(leaseOf(leasesAfter, node).vtepMac, leaseOf(leasesBefore, node).vtepMac, `${node.name}: VtepMAC is stable across restarts`);
      t.equal(leaseOf(leasesAfter, node).subnet, leaseOf(leasesBefore, node).subnet, `${node.name}: same subnet after the restart`);
    }
    t.same(await labVxlanProblems(lab), [], 'the tunnel is complete on every node afterwards');
  });

  t.test('the device deleted by hand is re-created with every peer\'s entries, neighbour before route', async (t) => {
    const leases = await leasesOf(lab);
    const peers = [n2, n3].map((n) => leaseOf(leases, n));
    const oldIndex = (await vxlanView(lab, n1)).link?.ifindex;
    const monitor = LineRecorder.start(['ip', 'monitor', 'link', 'neigh', 'route'], { netns: n1.ns });
    t.teardown(() => monitor.stop());
    await sleep(500); // let the monitor subscribe

    const t0 = performance.now();
    await lab.exec(n1, ['ip', 'link', 'del', VXLAN_DEV]);
    const w = await waitUntil(async () => (await nodeProblems(lab, n1)).length === 0, { timeoutMs: 20_000, intervalMs: 20 });
    t.same(w.ok ? [] : await nodeProblems(lab, n1), [], 'device, neighbours, FDB entries and routes are all back');
    const view = await vxlanView(lab, n1);
    t.not(view.link?.ifindex, oldIndex, 'it is a new device (the old one really was deleted)');

    // Order by position in the one event stream (arrival times can tie within a read).
    const events = monitor.lines.filter((l) => l.at >= t0 && !/Deleted/.test(l.line)).map((l) => l.line);
    const position = (re: RegExp): number | undefined => {
      const i = events.findIndex((line) => re.test(line));
      return i < 0 ? undefined : i;
    };
    const order: string[] = [];
    const fdbOrder: string[] = [];
    for (const peer of peers) {
      const esc = (s: string): string => s.replace(/\./g, '\\.');
      const neigh = position(new RegExp(`(^|\\])${esc(peer.gateway)} dev ${esc(VXLAN_DEV)} lladdr ${peer.vtepMac}`));
      const fdb = position(new RegExp(`(^|\\])${esc(peer.publicIP)} dev ${esc(VXLAN_DEV)} lladdr ${peer.vtepMac}`));
      const route = position(new RegExp(`(^|\\])${esc(peer.subnet)} via ${esc(peer.gateway)} dev ${esc(VXLAN_DEV)}`));
      if (neigh === undefined || fdb === undefined || route === undefined) {
        order.push(`${peer.subnet}: events seen neigh=${neigh !== undefined} fdb=${fdb !== undefined} route=${route !== undefined}`);
        continue;
      }
      if (neigh > route) order.push(`${peer.subnet}: route came before its neighbour`);
      fdbOrder.push(`${peer.subnet}: FDB entry ${fdb < route ? 'before' : 'after'} the route`);
    }
    // A route whose gateway has no neighbour entry would make the kernel ARP across the tunnel.
    t.same(order, [], 'for every peer the kernel reported the neighbour before the route');
    // On a device the dataplane has just created, FDB entries go in between the neighbours
    // and the routes (diff.ts toBatches); the comment reports what the kernel announced.
    t.comment(`order on re-creation: ${fdbOrder.join('; ')}`);
    t.comment(`device deleted -> device and every peer's entries back after ${w.ms} ms (polled every 20 ms)`);

    const matrix = await lab.pingMatrix();
    t.ok(matrix.ok, 'every pod reaches every pod again');
  });

  t.test('a device of the same name with the wrong port, found at start, is re-created', async (t) => {
    await lab.stopAgent(n1, 'SIGTERM');
    await lab.exec(n1, ['ip', 'link', 'del', VXLAN_DEV]);
    await lab.exec(n1, ['ip', 'link', 'add', VXLAN_DEV, 'type', 'vxlan', 'id', '1', 'dstport', '4789', 'local', n1.underlayIP, 'dev', 'eth0', 'nolearning']);
    await lab.startAgent(n1);
    const w = await waitUntil(async () => (await nodeProblems(lab, n1)).length === 0, { timeoutMs: 30_000, intervalMs: 50 });
    t.same(w.ok ? [] : await nodeProblems(lab, n1), [], 'the device has port 8472 again, with every peer\'s entries');
    t.ok((await lab.pingMatrix()).ok, 'every pod reaches every pod');
  });

  t.test('an FDB entry or neighbour deleted by hand is restored', async (t) => {
    const peer = leaseOf(await leasesOf(lab), n2);
    const view = () => vxlanView(lab, n1);
    await lab.exec(n1, ['bridge', 'fdb', 'del', peer.vtepMac!, 'dev', VXLAN_DEV, 'dst', peer.publicIP]);
    const fdb = await waitUntil(async () => (await view()).fdb.some((f) => f.mac === peer.vtepMac && f.dst === peer.publicIP), { timeoutMs: 30_000, intervalMs: 20 });
    t.ok(fdb.ok, `FDB entry ${peer.vtepMac} -> ${peer.publicIP} is back`);
    t.comment(`FDB entry restored after ${fdb.ms} ms`);

    await lab.exec(n1, ['ip', 'neigh', 'del', peer.gateway, 'dev', VXLAN_DEV]);
    const neigh = await waitUntil(async () => (await view()).neighs.some((n) => n.ip === peer.gateway && n.mac === peer.vtepMac), { timeoutMs: 30_000, intervalMs: 20 });
    t.ok(neigh.ok, `neighbour ${peer.gateway} -> ${peer.vtepMac} is back`);
    t.comment(`neighbour restored after ${neigh.ms} ms`);
    t.same(await nodeProblems(lab, n1), [], 'nothing else is missing');
  });

  t.test('a peer that leaves takes its entries with it on every node', async (t) => {
    const leases = await leasesOf(lab);
    const gone: NodeLease = leaseOf(leases, n3);
    await lab.stopAgent(n3, 'SIGTERM');
    const deleted = await lab.etcdDel(`${lab.etcdPrefix}/subnets/${gone.subnet.replace('/', '-')}`);
    t.equal(deleted, 1, `n3's lease ${gone.subnet} deleted from etcd`);

    const leftovers = async (node: LabNode): Promise<string[]> => {
      const v = await vxlanView(lab, node);
      const out: string[] = [];
      if (v.neighs.some((n) => n.ip === gone.gateway || n.mac === gone.vtepMac)) out.push('neighbour');
      if (v.fdb.some((f) => f.mac === gone.vtepMac || f.dst === gone.publicIP)) out.push('FDB entry');
      if (v.routes.some((r) => r.dst === gone.subnet)) out.push('route');
      const set = await lab.exec(node, ['nft', 'list', 'set', 'inet', 'weft', 'vxlan_peers4'], { check: false });
      if (set.stdout.includes(gone.publicIP)) out.push('firewall opening');
      return out.map((what) => `${node.name}: ${what} for the departed peer`);
    };
    for (const node of [n1, n2]) {
      const w = await waitUntil(async () => (await leftovers(node)).length === 0, { timeoutMs: 30_000, intervalMs: 50 });
      t.same(w.ok ? [] : await leftovers(node), [], `${node.name}: nothing of n3 is left`);
      t.comment(`${node.name}: n3's entries gone ${w.ms} ms after its lease was deleted`);
      t.same(await nodeProblems(lab, node), [], `${node.name}: the remaining peer is untouched`);
    }
    const matrix = await lab.pingMatrix({ pods: lab.pods.filter((p) => p.node !== n3.name) });
    t.ok(matrix.ok, 'the remaining pods still reach each other');
  });
  t.end();
});
