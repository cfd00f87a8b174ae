// The agent when etcd fails. On loopback (no lab): a 3-member etcd losing its
// quorum makes the lease watch report etcd unusable (require-leader) and
// recovery resumes the watch without a re-list; two nodes with one PublicIP
// starting at once end with one lease; a dead node's expired lease frees its
// subnet. In one lab (short lease TTL): readiness names etcd while a node is
// cut off from it; a cut-off longer than the TTL gives the node its old subnet
// back with no data-plane change, or, when another node took it, one line,
// not ready, routes and subnet.env untouched until the other lease goes; a
// node configured with another node's PublicIP, and a node finding no free
// subnet, stay up and not ready, saying why, without hammering etcd.
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import t from 'tap';
import { parseNetConf } from '../../src/config/parse.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import { EtcdCluster, EtcdServer, removeEtcdLeftovers } from '../../src/lab/etcd.js';
import type { LabNode } from '../../src/lab/lab.js';
import { EtcdSubnetManager } from '../../src/subnet/etcd/manager.js';
import type { LeaseAttrs, LeaseEvent } from '../../src/subnet/lease.js';
import { NoFreeSubnetError, PublicIPTakenError } from '../../src/subnet/manager.js';
import { freshLab, routesOf, until, waitUntil } from './support/lab-fixture.js';

const TAG = 'weft-effaults-';
const quiet = pino({ level: 'silent' });
const netConf = (extra: Record<string, string> = {}) => parseNetConf(JSON.stringify({ Network: '10.7.0.0/16', Backend: { Type: 'host-gw' }, ...extra }));
const attrs = (ip: string, nodeName?: string): LeaseAttrs => ({ publicIP: IP.parse(ip), backendType: 'host-gw', backendData: null, ...(nodeName ? { nodeName } : {}) });
const total = (c: Readonly<Record<string, number>>): number => Object.values(c).reduce((a, b) => a + b, 0);
const diff = (a: Readonly<Record<string, number>>, b: Readonly<Record<string, number>>) =>
  Object.fromEntries(Object.keys(b).filter((k) => b[k] !== a[k]).map((k) => [k, b[k]! - (a[k] ?? 0)]));

t.before(() => removeEtcdLeftovers(TAG));

t.test('a member losing its quorum: the watch says etcd has no leader, and resumes without a re-list', async (t) => {
  const cluster = await EtcdCluster.start([{}, {}, {}], { tag: TAG, namePrefix: 'ef' });
  t.teardown(() => cluster.cleanup());
  const [m1, m2, m3] = cluster.members as [EtcdServer, EtcdServer, EtcdServer];
  const manager = new EtcdSubnetManager({ etcd: { endpoints: [m1.endpoint], prefix: '/ef1' }, logger: quiet, netConf: netConf() });
  const other = new EtcdSubnetManager({ etcd: { endpoints: cluster.endpoints, prefix: '/ef1' }, logger: quiet, netConf: netConf() });
  const stop = new AbortController();
  t.teardown(async () => {
    stop.abort();
    await Promise.all([manager.close(), other.close()]);
  });
  await manager.acquireLease(attrs('198.51.100.1', 'a'));
  const deliveries: { events: LeaseEvent[]; snapshot: boolean }[] = [];
  const watching = manager.watchLeases((events, snapshot) => deliveries.push({ events, snapshot }), stop.signal);
  await until('the first snapshot', async () => deliveries.length > 0 && manager.health() === undefined);
  const before = manager.requestCounts();

  // m1 survives alone: no leader, but its process is up and accepts connections.
  await Promise.all([m2.kill(), m3.kill()]);
  const lost = Date.now();
  const down = await until('the watch to report etcd unusable', async () => manager.health(), 60_000);
  t.comment(`quorum lost to not-ready: ${Date.now() - lost} ms (etcd cancels require-leader streams after 3 election timeouts)`);
  t.match(down, { part: 'etcd', reason: new RegExp(`^etcd at ${m1.endpoint.replace(/[.:/]/g, '\\$&')} has no leader \\(the member lost its quorum\\) while watching leases`) }, 'readiness part names the endpoint and the cause');
  t.notMatch(down.reason, /\n/, 'one line');

  const atRestart = manager.requestCounts();
  await Promise.all([m2.restart(), m3.restart()]);
  await until('the watch to be confirmed again', async () => manager.health() === undefined, 60_000);
  const after = manager.requestCounts();
  const recovery = diff(atRestart, after);
  t.comment(`requests during the outage: ${JSON.stringify(diff(before, atRestart))}; on recovery (quorum back to watch confirmed): ${JSON.stringify(recovery)}, ${total(after) - total(atRestart)} in all`);
  t.same(
    { ranges: after.range! - before.range!, lists: after.list! - before.list!, snapshots: deliveries.filter((d) => d.snapshot).length, onlyWatches: Object.keys(recovery).every((k) => k === 'watch') },
    { ranges: 0, lists: 0, snapshots: 1, onlyWatches: true },
    'recovery re-creates the watch stream from its revision: no range, no list, no second snapshot',
  );
  await other.acquireLease(attrs('198.51.100.2', 'b'));
  const delta = await waitUntil(() => deliveries.some((d) => !d.snapshot && d.events.some((e) => e.type === 'added' && String(e.lease.attrs.publicIP) === '198.51.100.2')));
  t.ok(delta.ok, 'a change made after recovery reaches the watch as a delta');
  stop.abort();
  await watching;
});

t.test('one PublicIP, two nodes: exactly one lease, the other told why; flannel leases still reused', async (t) => {
  const etcd = await EtcdServer.start({ tag: TAG });
  t.teardown(() => etcd.cleanup());
  const managers: EtcdSubnetManager[] = [];
  t.teardown(() => Promise.all(managers.map((m) => m.close())));
  const make = (prefix: string, extra: Record<string, string> = {}) => {
    const m = new EtcdSubnetManager({ etcd: { endpoints: [etcd.endpoint], prefix }, logger: quiet, netConf: netConf(extra) });
    managers.push(m);
    return m;
  };
  const outcomes: string[] = [];
  const losers: string[] = [];
  for (let round = 1; round <= 6; round++) {
    const prefix = `/ef2/r${round}`;
    const results = await Promise.allSettled([make(prefix).acquireLease(attrs('198.51.100.7', 'a')), make(prefix).acquireLease(attrs('198.51.100.7', 'b'))]);
    const keys = (await make(prefix).listLeases()).length;
    const won = results.filter((r) => r.status === 'fulfilled').length;
    const lost = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
    outcomes.push(`won ${won}, keys ${keys}, lost by PublicIPTakenError ${lost.filter((e) => e instanceof PublicIPTakenError).length}`);
    losers.push(...lost.map((e) => e.message));
  }
  t.same(new Set(outcomes), new Set(['won 1, keys 1, lost by PublicIPTakenError 1']), 'every simultaneous start ends with one lease and one refusal');
  t.match(losers[0], /^PublicIP 198\.51\.100\.7 is already leased to node [ab] \(subnet 10\.7\.\d+\.0\/24\); this node \([ab]\) cannot share it: pass --public-ip \(or --iface\) to give this node its own address/, 'the refusal names the PublicIP, the holder and the fix');

  // The winner restarting keeps its key; a flannel lease (no NodeName) on our PublicIP is ours to reuse.
  const first = await make('/ef2/restart').acquireLease(attrs('198.51.100.8', 'a'));
  const again = await make('/ef2/restart').acquireLease(attrs('198.51.100.8', 'a'));
  const flannel = await make('/ef2/flannel').acquireLease(attrs('198.51.100.9'));
  const adopted = await make('/ef2/flannel').acquireLease(attrs('198.51.100.9', 'c'));
  t.same([String(again.subnet), String(adopted.subnet)], [String(first.subnet), String(flannel.subnet)], 'a restart keeps its subnet, a flannel lease is adopted');
});

t.test("a dead node's lease expires and frees its subnet for a new node", async (t) => {
  const etcd = await EtcdServer.start({ tag: TAG });
  t.teardown(() => etcd.cleanup());
  const one = { SubnetMin: '10.7.5.0', SubnetMax: '10.7.5.0' };
  const ttl = 3;
  const dead = new EtcdSubnetManager({ etcd: { endpoints: [etcd.endpoint], prefix: '/ef3' }, logger: quiet, netConf: netConf(one), leaseTtlSeconds: ttl });
  const fresh = new EtcdSubnetManager({ etcd: { endpoints: [etcd.endpoint], prefix: '/ef3' }, logger: quiet, netConf: netConf(one), leaseTtlSeconds: ttl });
  t.teardown(() => fresh.close());
  const held = await dead.acquireLease(attrs('198.51.100.21', 'dead'));
  await dead.close(); // dies without revoking: only expiry frees the subnet
  const died = Date.now();
  const refused = await fresh.acquireLease(attrs('198.51.100.22', 'new')).catch((e: unknown) => e);
  t.type(refused, NoFreeSubnetError, 'while the dead lease lives, the only subnet is taken');
  const taken = await until('the new node to get the freed subnet', () => fresh.acquireLease(attrs('198.51.100.22', 'new')).catch(() => undefined), 60_000);
  t.comment(`TTL ${ttl} s: subnet free again ${Date.now() - died} ms after the node died`);
  t.equal(String(taken.subnet), String(held.subnet), 'the new node takes the dead node\'s subnet');
});

interface Readyz { ready: boolean; failing: { part: string; reason: string }[] }

t.test('in a lab: readiness, long outages, conflicts and contention', async (t) => {
  // Three subnets for three nodes; a lease TTL of 8 s (renewed every ~5 s); a blocked lease retried every 2 s.
  const lab = await freshLab(t, {
    name: 'ef1',
    nodes: 3,
    podsPerNode: 1,
    netConf: { Network: '10.244.0.0/16', SubnetMin: '10.244.1.0', SubnetMax: '10.244.3.0', Backend: { Type: 'host-gw' } },
    agentArgs: ['--lease-ttl', '8s'],
  });
  const [n1, n2, n3] = lab.nodes as [LabNode, LabNode, LabNode];
  const etcdHost = new URL(lab.etcdEndpoint).hostname;
  const keyOf = (subnet: string) => `${lab.etcdPrefix}/subnets/${subnet.replace('/', '-')}`;
  const readyz = async (n: LabNode): Promise<Readyz> => JSON.parse((await lab.agentHttp(n, '/readyz')).body || '{"ready":false,"failing":[]}') as Readyz;
  const failing = async (n: LabNode, part: string) => (await readyz(n)).failing.find((f) => f.part === part && f.reason !== 'no subnet lease yet');
  const cut = (n: LabNode) => lab.exec(n, ['nft', '-f', '-'], { input: `table inet efcut {\n chain cut {\n  type filter hook output priority 0;\n  ip daddr ${etcdHost} drop\n }\n}\n` });
  const mend = (n: LabNode) => lab.exec(n, ['nft', 'delete', 'table', 'inet', 'efcut'], { check: false });
  t.teardown(() => mend(n1));
  const allRoutes = async () => Promise.all(lab.nodes.map((n) => routesOf(lab, n)));
  const subnetEnv = () => readFile(lab.subnetFile(n1), 'utf8');
  const pingAll = async () => (await lab.pingMatrix()).ok;
  const reacquisitions = async () => Number(/^weft_lease_reacquisitions_total (\d+)$/m.exec((await lab.agentHttp(n1, '/metrics')).body)?.[1]);
  const subnet1 = n1.subnet!;

  await t.test('cut off longer than the TTL, subnet still free: etcd part, then the same subnet back, data plane untouched', async (t) => {
    const [routes, env, reacq] = [await allRoutes(), await subnetEnv(), await reacquisitions()];
    await cut(n1);
    const down = await until('n1 to report etcd unusable', () => failing(n1, 'etcd'), 60_000);
    t.match(down.reason, new RegExp(`^etcd at http://${etcdHost.replace(/\./g, '\\.')}:\\d+ is unreachable while `), 'the etcd part names the endpoint and the cause');
    t.equal((await lab.agentHttp(n1, '/healthz')).status, 200, '/healthz stays 200');
    await until("n1's lease to expire in etcd", async () => (await lab.etcdGet(keyOf(subnet1))) === undefined, 60_000);
    // Peers drop the route to an expired lease's subnet (that is what the lease is); the cut-off node changes nothing.
    t.same((await allRoutes())[0], routes[0], "the cut-off node's routes stay as they were after its lease expired");
    await mend(n1);
    t.ok((await waitUntil(async () => (await readyz(n1)).ready, { timeoutMs: 60_000, intervalMs: 200 })).ok, 'ready again once etcd is reachable');
    t.same(
      { routes: await allRoutes(), env: await subnetEnv(), reacquired: (await reacquisitions()) - reacq, key: JSON.parse((await lab.etcdGet(keyOf(subnet1))) ?? '{}').NodeName },
      { routes, env, reacquired: 1, key: n1.ns },
      'the old subnet is leased again; no route on any node and not subnet.env changed',
    );
    t.ok(await pingAll(), 'every pod reaches every other again');
  });

  await t.test('cut off while another node takes its subnet: one line, not ready, nothing changed, until the other lease goes', async (t) => {
    const [routes, env] = [await allRoutes(), await subnetEnv()];
    await cut(n1);
    await until("n1's lease to expire in etcd", async () => (await lab.etcdGet(keyOf(subnet1))) === undefined, 60_000);
    // Another node takes the free subnet (a reservation: it never expires by itself).
    await lab.etcdPut(keyOf(subnet1), JSON.stringify({ PublicIP: '192.0.2.99', BackendType: 'host-gw', NodeName: 'intruder' }));
    await mend(n1);
    const blocked = await until('n1 to report its subnet taken', () => failing(n1, 'lease'), 60_000);
    const line = `this node's subnet ${subnet1} is leased to node intruder (PublicIP 192.0.2.99); routes, pods and ${lab.subnetFile(n1)} are left as they are and weft retries every 2s: ` +
      `to give this node a new subnet, drain it, delete ${lab.subnetFile(n1)} and restart weft (or delete the other lease if that node is gone)`;
    t.equal(blocked.reason, line, 'readiness names the subnet, the holder and the fix');
    await sleep(4000); // a few slow retries
    const logged = (await readFile(lab.agentLogFile(n1), 'utf8')).split('\n').filter((l) => l.includes('is leased to node intruder')).map((l) => (JSON.parse(l) as { msg: string }).msg);
    t.same(logged, [line], 'said once in the log, however many retries');
    t.same({ n1: (await allRoutes())[0], env: await subnetEnv() }, { n1: routes[0], env }, "n1's routes and subnet.env are unchanged");
    t.equal((await lab.agentHttp(n1, '/healthz')).status, 200, '/healthz stays 200');
    await lab.etcdDel(keyOf(subnet1));
    t.ok((await waitUntil(async () => (await readyz(n1)).ready, { timeoutMs: 60_000, intervalMs: 200 })).ok, 'ready again with no operator action on n1');
    t.same(JSON.parse((await lab.etcdGet(keyOf(subnet1))) ?? '{}').NodeName, n1.ns, 'the subnet is n1\'s again');
  });

  await t.test("at start: subnet.env's subnet taken, another node's PublicIP, no free subnet — up, not ready, saying why, few requests", async (t) => {
    // n3 restarts while another node holds the subnet its subnet.env (and its pods) use.
    await lab.stopAgent(n3);
    const env3 = await readFile(lab.subnetFile(n3), 'utf8');
    await lab.etcdPut(keyOf(n3.subnet!), JSON.stringify({ PublicIP: '192.0.2.98', BackendType: 'host-gw', NodeName: 'squatter' }));
    await lab.startAgent(n3, { readyTimeoutMs: 1 }).catch(() => undefined);
    const mineTaken = await until("n3 to refuse to start on another subnet", () => failing(n3, 'lease'), 60_000);
    t.match(mineTaken.reason, new RegExp(`^this node's subnet ${n3.subnet!.replace(/[./]/g, '\\$&')} is leased to node squatter \\(PublicIP 192\\.0\\.2\\.98\\); routes, pods and `), 'names its subnet and the holder');
    t.equal(await readFile(lab.subnetFile(n3), 'utf8'), env3, 'subnet.env is left as it was');

    // As a new node (no subnet.env) configured with n2's address.
    await lab.stopAgent(n3);
    await lab.exec(n3, ['rm', '-f', lab.subnetFile(n3)]);
    await lab.startAgent(n3, { args: ['--public-ip', n2.underlayIP], readyTimeoutMs: 1 }).catch(() => undefined);
    const ipTaken = await until('n3 to refuse n2\'s PublicIP', () => failing(n3, 'lease'), 60_000);
    t.match(ipTaken.reason, new RegExp(`^PublicIP ${n2.underlayIP.replace(/\./g, '\\.')} is already leased to node ${n2.ns} \\(subnet ${n2.subnet!.replace(/[./]/g, '\\$&')}\\); this node \\(${n3.ns}\\) cannot share it: pass --public-ip \\(or --iface\\)`), 'names the PublicIP, the holder and the fix');

    // Its own address, but the range is full: the squatter holds the last subnet.
    await lab.stopAgent(n3);
    await lab.startAgent(n3, { readyTimeoutMs: 1 }).catch(() => undefined);
    const full = await until('n3 to report no free subnet', () => failing(n3, 'lease'), 60_000);
    t.match(full.reason, /^no free subnet for this node: SubnetMin 10\.244\.1\.0 and SubnetMax 10\.244\.3\.0 allow 3 \/24 subnets and all are leased or reserved; widen SubnetMin\/SubnetMax/, 'names both keys, their values and the count');
    const metrics = async () => Number(/^weft_etcd_requests_total\{call="range"\} (\d+)$/m.exec((await lab.agentHttp(n3, '/metrics')).body)?.[1]);
    const [r0, t0] = [await metrics(), Date.now()];
    await sleep(4000);
    const [r1, t1] = [await metrics(), Date.now()];
    // One list per try, one try per 2 s period (a quarter of the TTL): an upper bound, never a speed requirement.
    t.ok(r1 - r0 <= Math.ceil((t1 - t0) / 2000) + 1, `no hammering: ${r1 - r0} lists in ${t1 - t0} ms`);
    t.equal((await lab.agentHttp(n3, '/healthz')).status, 200, 'the agent stays up');
    await lab.etcdDel(keyOf(n3.subnet!));
    t.ok((await waitUntil(async () => (await readyz(n3)).ready, { timeoutMs: 60_000, intervalMs: 200 })).ok, 'ready once a subnet is free');
  });
});
