// The udp loop process outlives the backend that started it: a new backend
// adopts it (same process, its table kept until the new one is pushed),
// replaces it only when the options changed, restarts it when it dies, and
// stops it (deleting weft0) only for teardown. Two testbed nodes, no agent.
import t from 'tap';
import { spawn } from 'node:child_process';
import { LoopConnection, udpLoopSocket, type LoopStatus, type LoopTable } from '../../backends/udp/loop-client.js';
import { UdpTestbed, inNs, type TestbedNode } from '../support/udp-testbed.js';
import { isAlive } from '../../src/core/process.js';
import { until } from './support/lab-fixture.js';

/** What the loop process of `node` says about itself, asked on its socket. */
async function loopOf(node: TestbedNode): Promise<{ status: LoopStatus; table: LoopTable } | undefined> {
  const conn = await LoopConnection.open(udpLoopSocket(node.runDir));
  if (!conn) return undefined;
  try {
    return { status: await conn.status(), table: await conn.table() };
  } finally {
    conn.close();
  }
}

async function pidOf(node: TestbedNode): Promise<number> {
  const loop = await loopOf(node);
  if (!loop) throw new Error(`no loop process answers for ${node.ns}`);
  return loop.status.pid;
}

if (process.getuid?.() !== 0) {
  t.fail('the udp e2e tests need root (network namespaces, TUN devices); run them as root');
} else {
  const tb = await UdpTestbed.create({ prefix: 'ud-lp', nodes: 2 });
  t.teardown(() => tb.destroy());
  const [n1, n2] = tb.nodes as [TestbedNode, TestbedNode];
  let [a, b] = await Promise.all([tb.startNode(n1, { kind: 'backend' }), tb.startNode(n2, { kind: 'backend' })]);
  await Promise.all([a.sync(tb.peersOf(n1)), b.sync(tb.peersOf(n2))]);
  const reaches = async (from: TestbedNode, to: TestbedNode): Promise<boolean> =>
    (await inNs(from.podNs, 'ping', ['-n', '-c', '1', '-W', '1', to.pod], 10_000)).code === 0;

  t.test('a new backend adopts the running loop process and hands its table over', async (t) => {
    const before = (await loopOf(n1))!;
    await a.kill('SIGKILL');
    t.ok(isAlive(before.status.pid), 'the loop process outlives a SIGKILLed backend');
    t.ok(await reaches(n2, n1), 'traffic flows while no backend runs');
    const started = Date.now();
    a = await tb.startNode(n1, { kind: 'backend' });
    t.comment(`new backend up in ${Date.now() - started} ms`);
    const adopted = (await loopOf(n1))!;
    t.equal(adopted.status.pid, before.status.pid, 'the same process: adopted, not restarted');
    t.same(adopted.table, before.table, 'it kept its table until the new backend pushed one');
    const extra = { subnet: '10.250.77.0/24', publicIP: '192.0.2.77' };
    await a.sync([...tb.peersOf(n1), extra]);
    t.same((await loopOf(n1))!.table.peers, [...tb.peersOf(n1), extra], "the new backend's table is in force");
    await a.sync(tb.peersOf(n1));
  });

  t.test('SIGTERM of the backend leaves the loop process running', async (t) => {
    const pid = await pidOf(n2);
    t.equal(await b.kill(), 0, 'the backend exits cleanly');
    t.ok(isAlive(pid), 'its loop process runs on');
    b = await tb.startNode(n2, { kind: 'backend' });
    t.equal(await pidOf(n2), pid, 'and is adopted by the next backend');
    await b.sync(tb.peersOf(n2));
  });

  t.test('a backend with other options replaces the loop process', async (t) => {
    const pid = await pidOf(n1);
    await a.kill('SIGKILL');
    a = await tb.startNode(n1, { kind: 'backend', backend: { Mode: 'simple' } });
    const replaced = (await loopOf(n1))!;
    t.not(replaced.status.pid, pid, 'a new process');
    t.notOk(isAlive(pid), 'the old one is gone');
    t.equal(replaced.status.features.mode, 'simple', 'running the new options');
    await a.sync(tb.peersOf(n1));
    t.ok(await until('traffic through the new loop', async () => reaches(n2, n1), 10_000), 'traffic flows through it');
  });

  t.test('a loop process that dies is restarted with the last table', async (t) => {
    const pid = await pidOf(n1);
    process.kill(pid, 'SIGKILL');
    const next = await until('a new loop process', async () => {
      const loop = await loopOf(n1).catch(() => undefined);
      return loop && loop.status.pid !== pid && loop.table.peers.length > 0 ? loop : undefined;
    });
    t.same(next.table.peers, tb.peersOf(n1), 'the backend restarted it and handed the table over');
    t.ok(await until('traffic through the restarted loop', async () => reaches(n2, n1), 10_000), 'traffic flows again');
  });

  t.test('teardown stops the loop process and deletes weft0', async (t) => {
    const pid = await pidOf(n1);
    await a.stop(true);
    t.notOk(isAlive(pid), 'the loop process is gone');
    t.not((await inNs(n1.ns, 'ip', ['link', 'show', 'weft0'])).code, 0, 'weft0 is gone');
  });

  t.test('a port in use ends the start with one line naming cause and fix', async (t) => {
    // Someone else holds port 8285 on node 1 now.
    const holder = spawn('ip', ['netns', 'exec', n1.ns, process.execPath, '-e',
      `require('node:dgram').createSocket('udp4').bind(8285, '${n1.underlay}', () => console.log('bound'))`], { stdio: ['ignore', 'pipe', 'ignore'] });
    t.teardown(() => void holder.kill('SIGKILL'));
    await new Promise((resolve) => holder.stdout!.once('data', resolve));
    await t.rejects(tb.startNode(n1, { kind: 'backend' }), /udp backend: .*; stop the other process using UDP port 8285 \(flanneld\?\) or set Backend\.Port/);
  });
}
