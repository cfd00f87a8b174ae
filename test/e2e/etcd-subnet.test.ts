// EtcdSubnetManager against a real etcd (Debian's etcd-server) on loopback.
// No root needed. One etcd per file; each subtest uses its own key prefix.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Etcd3 } from 'etcd3';
import { pino, type Logger } from 'pino';
import t from 'tap';
import { WeftError } from '../../src/errors.js';
import { parseNetConf } from '../../src/config/parse.js';
import type { NetConf } from '../../src/config/netconf.js';
import { EtcdServer, removeEtcdLeftovers } from '../../src/lab/etcd.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import { createEtcdClient, EtcdUnreachableError } from '../../src/subnet/etcd/client.js';
import { EtcdSubnetManager, listLeases } from '../../src/subnet/etcd/manager.js';
import type { Lease, LeaseAttrs, LeaseEvent } from '../../src/subnet/lease.js';
import { LeaseGoneError, NoFreeSubnetError, PublicIPTakenError } from '../../src/subnet/manager.js';
import { run as leasesCli } from '../../src/cli/leases.js';

const TAG = 'weft-etcdtest-';
const WAIT_MS = 60_000; // generous: the machine is shared

type LogLine = { level: number; msg: string; [k: string]: unknown };

function capturingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines };
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = WAIT_MS): Promise<number> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
  return Date.now() - start;
}

function attrs(ip: string, extra: Partial<LeaseAttrs> = {}): LeaseAttrs {
  return { publicIP: IP.parse(ip), backendType: 'host-gw', backendData: null, ...extra };
}

/** A TCP forwarder we can cut: it stands in for a network path to etcd. */
class GatedProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;
  constructor(private readonly target: number, private readonly silent = false) {}

  async open(): Promise<void> {
    const server = createServer((client) => {
      this.sockets.add(client);
      client.on('close', () => this.sockets.delete(client));
      client.on('error', () => client.destroy());
      if (this.silent) return; // accepts and never answers: a hung peer
      const upstream = connect(this.target, '127.0.0.1');
      this.sockets.add(upstream);
      upstream.on('close', () => this.sockets.delete(upstream));
      upstream.on('error', () => client.destroy());
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  /** Refuses new connections and drops the open ones. */
  async block(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise((r) => server.close(r));
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }
}

/** A watcher's view of the leases, built only from the events it delivered. */
function watchInto(manager: EtcdSubnetManager) {
  const view = new Map<string, Lease>();
  const batches: { events: LeaseEvent[]; snapshot: boolean }[] = [];
  let anomalies = 0;
  const ac = new AbortController();
  const done = manager.watchLeases((events, snapshot) => {
    batches.push({ events, snapshot });
    for (const e of events) {
      const k = e.lease.subnet.toString();
      if (e.type === 'added') {
        if (view.has(k)) anomalies++; // an add without the removal of what it replaces
        view.set(k, e.lease);
      } else {
        if (!view.get(k)?.attrs.publicIP.equals(e.lease.attrs.publicIP)) anomalies++;
        view.delete(k);
      }
    }
  }, ac.signal);
  return {
    view,
    batches,
    anomalies: () => anomalies,
    ipOf: (subnet: string) => view.get(subnet)?.attrs.publicIP.toString(),
    stop: async () => {
      ac.abort();
      await done;
    },
  };
}

removeEtcdLeftovers(TAG)
  .then(() => EtcdServer.start({ tag: TAG }))
  .then(
    (etcd) => main(etcd),
    (err: unknown) => {
      t.fail(`cannot start etcd: ${err instanceof Error ? err.message : err}`);
    },
  );

function main(etcd: EtcdServer): void {
  t.teardown(() => etcd.cleanup());
  const raw: Etcd3 = createEtcdClient({ endpoints: [etcd.endpoint], prefix: '' });
  t.teardown(() => raw.close());
  const closers: (() => Promise<void>)[] = [];
  t.teardown(async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  });

  const put = (key: string, value: string, lease?: string) =>
    raw.kv.put({ key: Buffer.from(key), value: Buffer.from(value), ...(lease ? { lease } : {}) });
  const grant = async (ttl: number) => (await raw.leaseClient.leaseGrant({ TTL: ttl })).ID;
  const get = async (key: string) => (await raw.kv.range({ key: Buffer.from(key) })).kvs[0];

  async function network(prefix: string, conf: Record<string, unknown>): Promise<void> {
    await put(`${prefix}/config`, JSON.stringify(conf));
  }

  function manager(prefix: string, opts: { ttl?: number; endpoint?: string; logger?: Logger; timeoutMs?: number; netConf?: NetConf } = {}): EtcdSubnetManager {
    const m = new EtcdSubnetManager({
      etcd: { endpoints: [opts.endpoint ?? etcd.endpoint], prefix, dialTimeoutMs: opts.timeoutMs },
      logger: opts.logger ?? pino({ level: 'silent' }),
      leaseTtlSeconds: opts.ttl,
      netConf: opts.netConf,
    });
    closers.push(() => m.close());
    return m;
  }

  t.test('20 managers acquiring at once get 20 distinct subnets; a full range is a clear error', async (t) => {
    const prefix = '/weft-test/concurrent';
    // 32 subnets of /27, the first skipped: 31 leasable, so concurrent random picks do collide.
    await network(prefix, { Network: '10.6.0.0/22', SubnetLen: 27, Backend: { Type: 'host-gw' } });
    const managers = Array.from({ length: 20 }, () => manager(prefix));
    const start = Date.now();
    const leases = await Promise.all(managers.map((m, i) => m.acquireLease(attrs(`198.51.100.${i + 1}`), {})));
    t.comment(`20 concurrent acquisitions: ${Date.now() - start} ms`);
    const subnets = new Set(leases.map((l) => l.subnet.toString()));
    t.equal(subnets.size, 20, 'all distinct');
    const net = Cidr.parse('10.6.0.0/22');
    for (const l of leases) {
      t.ok(net.covers(l.subnet) && l.subnet.prefixLen === 27 && !l.subnet.equals(Cidr.parse('10.6.0.0/27')), `${l.subnet} leasable`);
      t.ok(l.expiresAt !== undefined && l.expiresAt > Date.now());
    }
    for (const [i, l] of leases.entries()) {
      const kv = await get(`${prefix}/subnets/${l.subnet.toKey()}`);
      t.equal(JSON.parse(kv!.value.toString()).PublicIP, `198.51.100.${i + 1}`);
      t.not(kv!.lease, '0', 'attached to an etcd lease');
    }
    // Fill the rest, then one more node finds nothing.
    const rest = Array.from({ length: 11 }, () => manager(prefix));
    await Promise.all(rest.map((m, i) => m.acquireLease(attrs(`198.51.100.${i + 101}`), {})));
    const err = await manager(prefix).acquireLease(attrs('198.51.100.200'), {}).catch((e: unknown) => e);
    t.type(err, NoFreeSubnetError);
    t.match((err as Error).message, /^no free subnet for this node: SubnetMin 10\.6\.0\.32 and SubnetMax 10\.6\.3\.224 allow 31 \/27 subnets and all are leased or reserved; /);
    t.notMatch((err as Error).message, /\n/);
  });

  t.test('restart: same PublicIP gets the same subnet; prefer is honoured when free', async (t) => {
    const prefix = '/weft-test/restart';
    await network(prefix, { Network: '10.7.0.0/16', Backend: { Type: 'host-gw' } });
    const first = manager(prefix);
    // A lease without a node name (flannel's, or an older weft's) is this PublicIP's node's.
    const lease = await first.acquireLease(attrs('198.51.100.1'), {});
    const before = await get(`${prefix}/subnets/${lease.subnet.toKey()}`);
    await first.close();

    const second = manager(prefix);
    const again = await second.acquireLease(attrs('198.51.100.1', { nodeName: 'a' }), { prefer: Cidr.parse('10.7.99.0/24') });
    t.equal(again.subnet.toString(), lease.subnet.toString(), 'same subnet, prefer ignored for an existing lease');
    const after = await get(`${prefix}/subnets/${again.subnet.toKey()}`);
    t.equal(JSON.parse(after!.value.toString()).NodeName, 'a', 'attrs republished');
    // Once named, the key is that node's: another node with the same PublicIP is refused, not given it.
    t.type(await manager(prefix).acquireLease(attrs('198.51.100.1', { nodeName: 'b' }), {}).catch((e: unknown) => e), PublicIPTakenError, 'another node name with this PublicIP is refused');
    t.not(after!.lease, before!.lease, 'moved to a fresh etcd lease');
    // Revoking is best effort in the background: wait for it.
    await waitFor('the superseded etcd lease revoked', async () => Number((await raw.leaseClient.leaseTimeToLive({ ID: before!.lease })).TTL) === -1);
    t.equal(Number((await raw.leaseClient.leaseTimeToLive({ ID: before!.lease })).TTL), -1, 'the superseded etcd lease was revoked');

    const other = manager(prefix);
    const preferred = await other.acquireLease(attrs('198.51.100.2'), { prefer: Cidr.parse('10.7.42.0/24') });
    t.equal(preferred.subnet.toString(), '10.7.42.0/24');
    const taken = await manager(prefix).acquireLease(attrs('198.51.100.3'), { prefer: Cidr.parse('10.7.42.0/24') });
    t.not(taken.subnet.toString(), '10.7.42.0/24', 'a taken prefer is not stolen');
    const kept = await manager(prefix).acquireLease(attrs('198.51.100.5'), { prefer: Cidr.parse('10.7.42.0/24'), keepPrefer: true }).catch((e: unknown) => e);
    t.match(kept, { name: 'SubnetTakenError', message: "this node's subnet 10.7.42.0/24 is leased to PublicIP 198.51.100.2" }, 'a taken prefer that must be kept is refused, naming its holder');
    const outside = await manager(prefix).acquireLease(attrs('198.51.100.4'), { prefer: Cidr.parse('10.7.0.0/24') });
    t.not(outside.subnet.toString(), '10.7.0.0/24', 'a prefer below SubnetMin is ignored');
  });

  t.test('renewLease: extends, republishes, and reports a lease that is gone or taken', async (t) => {
    const prefix = '/weft-test/renew';
    await network(prefix, { Network: '10.8.0.0/16', Backend: { Type: 'host-gw' } });
    const m = manager(prefix, { ttl: 60 });
    const lease = await m.acquireLease(attrs('198.51.100.1'), {});
    const key = `${prefix}/subnets/${lease.subnet.toKey()}`;
    const leaseId = (await get(key))!.lease;
    await sleep(1100);
    const renewed = await m.renewLease({ ...lease, attrs: attrs('198.51.100.1', { backendData: { x: 1 } }) });
    t.ok(renewed.expiresAt! > lease.expiresAt!, 'expiry moved on');
    const kv = await get(key);
    t.equal(kv!.lease, leaseId, 'same etcd lease (kept alive, not replaced)');
    t.same(JSON.parse(kv!.value.toString()).BackendData, { x: 1 }, 'changed attrs republished');
    const rev = kv!.mod_revision;
    await m.renewLease(renewed);
    t.equal((await get(key))!.mod_revision, rev, 'an unchanged renewal writes nothing (no event for peers)');

    // a longer TTL setting moves the key to a lease of that TTL
    const longer = manager(prefix, { ttl: 120 });
    const moved = await longer.renewLease(renewed);
    t.ok(moved.expiresAt! - Date.now() > 100_000, 'new TTL applies');

    await put(key, JSON.stringify({ PublicIP: '198.51.100.9', BackendType: 'host-gw' }));
    t.type(await m.renewLease(renewed).catch((e: unknown) => e), LeaseGoneError, 'taken by another PublicIP');
    await raw.kv.deleteRange({ key: Buffer.from(key) });
    t.type(await m.renewLease(renewed).catch((e: unknown) => e), LeaseGoneError, 'deleted');
  });

  t.test('a reservation goes to its node only, and stays without a TTL', async (t) => {
    const prefix = '/weft-test/reservation';
    // /22 in /24s, first skipped: .9, .10, .11 are leasable; .10 is reserved.
    await network(prefix, { Network: '10.9.8.0/22', Backend: { Type: 'host-gw' } });
    await put(`${prefix}/subnets/10.9.10.0-24`, JSON.stringify({ PublicIP: '198.51.100.50', BackendType: 'host-gw' }));
    const others = await Promise.all([1, 2].map((i) => manager(prefix).acquireLease(attrs(`198.51.100.${i}`), { prefer: Cidr.parse('10.9.10.0/24') })));
    t.same(others.map((l) => l.subnet.toString()).sort(), ['10.9.11.0/24', '10.9.9.0/24'], 'others never take it, even preferring it');
    await t.rejects(manager(prefix).acquireLease(attrs('198.51.100.3'), {}), /no free subnet/);

    const owner = manager(prefix, { ttl: 5 });
    const mine = await owner.acquireLease(attrs('198.51.100.50', { nodeName: 'reserved' }), {});
    t.equal(mine.subnet.toString(), '10.9.10.0/24');
    t.equal(mine.expiresAt, undefined, 'a reservation has no expiry');
    let kv = await get(`${prefix}/subnets/10.9.10.0-24`);
    t.equal(kv!.lease, '0', 'still no etcd lease');
    t.equal(JSON.parse(kv!.value.toString()).NodeName, 'reserved', 'attrs published');
    const renewed = await owner.renewLease(mine);
    t.equal(renewed.expiresAt, undefined);
    kv = await get(`${prefix}/subnets/10.9.10.0-24`);
    t.equal(kv!.lease, '0');
  });

  t.test('lease expiry (short TTL): a watcher sees the removal; a renewed lease stays', async (t) => {
    const prefix = '/weft-test/expiry';
    await network(prefix, { Network: '10.10.0.0/16', Backend: { Type: 'host-gw' } });
    // The watcher shares its manager (and connection) with the renewals, as in the agent.
    const { logger, lines } = capturingLogger();
    const renewer = manager(prefix, { ttl: 2, logger });
    const w = watchInto(renewer);
    t.teardown(w.stop);
    const expiring = await manager(prefix, { ttl: 2 }).acquireLease(attrs('198.51.100.1'), {});
    let kept = await renewer.acquireLease(attrs('198.51.100.2'), {});
    await waitFor('both leases seen', () => w.view.size === 2);
    const start = Date.now();
    let removedAfter = 0;
    let lastRenewal = 0;
    await waitFor('the unrenewed lease removed', async () => {
      if (Date.now() - lastRenewal > 500) {
        kept = await renewer.renewLease(kept);
        lastRenewal = Date.now();
      }
      if (!w.view.has(expiring.subnet.toString())) removedAfter = Date.now() - start;
      return removedAfter > 0;
    });
    t.comment(`TTL 2 s: removal seen ${removedAfter} ms after the watcher saw the lease`);
    t.ok(w.view.has(kept.subnet.toString()), 'the renewed lease is still there');
    t.ok(w.batches[0]?.snapshot, 'first delivery is the snapshot');
    t.equal(w.anomalies(), 0);
    t.same(lines.filter((l) => l.level >= 40).map((l) => l.msg), [], 'renewals never disturbed the watch stream');
    t.type(await manager(prefix, { ttl: 2 }).renewLease(expiring).catch((e: unknown) => e), LeaseGoneError, 'renewing an expired lease');
  });

  t.test('etcd killed and restarted under a live watch: it resumes and misses nothing', async (t) => {
    const prefix = '/weft-test/restart-etcd';
    await network(prefix, { Network: '10.11.0.0/16', Backend: { Type: 'host-gw' } });
    const proxy = new GatedProxy(etcd.clientPort);
    await proxy.open();
    t.teardown(() => proxy.block());
    const { logger, lines } = capturingLogger();
    const w = watchInto(manager(prefix, { endpoint: proxy.endpoint, logger }));
    t.teardown(w.stop);
    const writer = manager(prefix);
    const a = await writer.acquireLease(attrs('198.51.100.1'), {});
    await waitFor('lease A seen', () => w.ipOf(a.subnet.toString()) === '198.51.100.1');

    await etcd.kill();
    // Keep the watcher's path cut until a second client has written: it is certainly still reconnecting then.
    await proxy.block();
    const restartStart = Date.now();
    await etcd.restart();
    t.comment(`etcd restart (after SIGKILL) took ${Date.now() - restartStart} ms`);
    const second = manager(prefix);
    const b = await second.acquireLease(attrs('198.51.100.2'), {});
    await raw.kv.deleteRange({ key: Buffer.from(`${prefix}/subnets/${a.subnet.toKey()}`) });
    await proxy.open();
    const resumeStart = Date.now();
    await waitFor('B seen and A gone', () => w.ipOf(b.subnet.toString()) === '198.51.100.2' && !w.view.has(a.subnet.toString()));
    t.comment(`changes made while the watcher was cut off arrived ${Date.now() - resumeStart} ms after the path reopened`);
    await waitFor('the watch to report recovery', () => lines.some((l) => l.msg === 'etcd lease watch recovered'));

    const c = await manager(prefix).acquireLease(attrs('198.51.100.3'), {});
    await waitFor('C seen', () => w.ipOf(c.subnet.toString()) === '198.51.100.3');
    const truth = (await writer.listLeases()).flatMap((r) => ('lease' in r ? [r.lease.subnet.toString()] : [])).sort();
    t.same([...w.view.keys()].sort(), truth, "the watcher's view equals etcd");
    t.equal(w.anomalies(), 0, 'no duplicate or phantom events');
    t.equal(w.batches.filter((b) => b.snapshot).length, 1, 'one snapshot only');
    t.notOk(lines.some((l) => /compaction/.test(l.msg)), 'resumed from its revision, not re-listed');
    const steps = lines.filter((l) => l.msg === 'etcd lease watch failed; retrying').map((l) => l.retryInMs);
    t.same(steps, [...new Set(steps)], `each backoff step logged once (${steps.join(', ')} ms)`);
  });

  t.test('compaction past the watcher: re-list and a correct diff; bad values warned once', async (t) => {
    const prefix = '/weft-test/compaction';
    await network(prefix, { Network: '10.12.0.0/16', Backend: { Type: 'vxlan' } });
    const proxy = new GatedProxy(etcd.clientPort);
    await proxy.open();
    t.teardown(() => proxy.block());
    const { logger, lines } = capturingLogger();
    const w = watchInto(manager(prefix, { endpoint: proxy.endpoint, logger }));
    t.teardown(w.stop);
    const vx = (ip: string, vni: number) => attrs(ip, { backendType: 'vxlan', backendData: { VNI: vni } });
    const a = await manager(prefix).acquireLease(vx('198.51.100.1', 1), {});
    const bm = manager(prefix);
    const b = await bm.acquireLease(vx('198.51.100.2', 1), {});
    const bad = `${prefix}/subnets/10.12.200.0-24`;
    await put(bad, '{"PublicIP": "not-an-ip", "BackendType": "vxlan"}');
    await put(`${prefix}/subnets/10.99.0.0-24`, JSON.stringify({ PublicIP: '198.51.100.77', BackendType: 'vxlan' }));
    await waitFor('A and B seen', () => w.view.size === 2);
    const batchesBefore = w.batches.length;

    await proxy.block();
    await raw.kv.deleteRange({ key: Buffer.from(`${prefix}/subnets/${a.subnet.toKey()}`) });
    await bm.renewLease({ ...b, attrs: vx('198.51.100.2', 7) });
    const d = await manager(prefix).acquireLease(vx('198.51.100.4', 1), {});
    const head = await raw.kv.range({ key: Buffer.from(`${prefix}/config`) });
    await raw.kv.compact({ revision: head.header.revision, physical: true });
    await proxy.open();

    await waitFor('the re-list diff', () => !w.view.has(a.subnet.toString()) && w.view.has(d.subnet.toString()));
    await waitFor('B updated', () => (w.view.get(b.subnet.toString())?.attrs.backendData as { VNI?: number })?.VNI === 7);
    t.ok(lines.some((l) => l.msg === 'lease watch fell behind an etcd compaction; re-listing'), 'took the compaction path');
    const diff = w.batches.slice(batchesBefore).flatMap((x) => x.events.map((e) => `${e.type} ${e.lease.subnet}`));
    t.same(
      diff.sort(),
      [`added ${b.subnet}`, `added ${d.subnet}`, `removed ${a.subnet}`, `removed ${b.subnet}`].sort(),
      'exactly the changes, as events',
    );
    t.equal(w.anomalies(), 0);
    const warnings = (key: string) => lines.filter((l) => l.msg === 'skipping invalid lease' && l.key === key);
    t.equal(warnings(bad).length, 1, 'a bad value is warned about once, not again on re-list');
    t.match(warnings(bad)[0]?.reason, /PublicIP "not-an-ip" is not an IP address/);
    t.equal(warnings(`${prefix}/subnets/10.99.0.0-24`).length, 1, 'a subnet outside Network is skipped with a warning');
  });

  t.test('unreachable etcd: one clear line, quickly, never a hang', async (t) => {
    const prefix = '/weft-test/unreachable';
    await put(`${prefix}/config`, '{"Network":"10.13.0.0/16","SubnetLen":33,"Backend":{"Type":"host-gw"}}');
    const badConf = await manager(prefix).getNetworkConfig().catch((e: unknown) => e);
    t.match((badConf as Error).message, /^net-conf: .*SubnetLen.* \(in \/weft-test\/unreachable\/config\); fix the file/, 'a bad config in etcd says where it is');
    const noConf = await manager('/weft-test/none').getNetworkConfig().catch((e: unknown) => e);
    t.match((noConf as Error).message, /^no network config at \/weft-test\/none\/config in etcd at http:\S+; write one with "weft config put/);

    // A port with nobody listening (refused) ...
    const closed = new GatedProxy(etcd.clientPort);
    await closed.open();
    await closed.block();
    let start = Date.now();
    const refused = await manager(prefix, { endpoint: closed.endpoint }).acquireLease(attrs('198.51.100.1'), {}).catch((e: unknown) => e);
    t.comment(`refused endpoint failed after ${Date.now() - start} ms`);
    t.type(refused, EtcdUnreachableError, 'an error the agent can tell apart and retry');
    t.match((refused as Error).message, new RegExp(`^etcd at ${closed.endpoint} is unreachable while reading the network config \\(.*\\); check --etcd-endpoints`));
    t.notMatch((refused as Error).message, /\n/);

    // ... and a peer that accepts but never answers (a hung host): bounded by the call deadline.
    const hung = new GatedProxy(etcd.clientPort, true);
    await hung.open();
    t.teardown(() => hung.block());
    start = Date.now();
    const timedOut = await manager(prefix, { endpoint: hung.endpoint, timeoutMs: 1500 }).getNetworkConfig().catch((e: unknown) => e);
    t.comment(`silent endpoint failed after ${Date.now() - start} ms (deadline 1500 ms)`);
    t.type(timedOut, WeftError);
    t.match((timedOut as Error).message, new RegExp(`^etcd at ${hung.endpoint} is unreachable`));

    // The watch does not throw: it retries with backoff until aborted, logging each step once.
    const { logger, lines } = capturingLogger();
    const m = manager(prefix, { endpoint: closed.endpoint, logger });
    const ac = new AbortController();
    const watching = m.watchLeases(() => t.fail('no events from an unreachable etcd'), ac.signal);
    await waitFor('a few backoff steps', () => lines.filter((l) => l.msg === 'etcd lease watch failed; retrying').length >= 4);
    ac.abort();
    start = Date.now();
    await watching;
    t.comment(`watch returned ${Date.now() - start} ms after abort`);
    const steps = lines.filter((l) => l.msg === 'etcd lease watch failed; retrying').map((l) => l.retryInMs);
    t.same(steps.slice(0, 4), [100, 200, 400, 800]);
    t.match(lines[0]?.reason, /No connection established|ECONNREFUSED|unavailable/i);
  });

  t.test('a missing etcd binary is one line naming the package', async (t) => {
    const err = await EtcdServer.start({ tag: TAG, binary: '/nonexistent/etcd' }).catch((e: unknown) => e);
    t.type(err, WeftError);
    t.equal((err as Error).message, '/nonexistent/etcd is missing; install it: apt-get install etcd-server');
  });

  t.test('dual-stack: both halves in flannel\'s key and value, kept on renewal, re-keyed atomically keeping the IPv4 subnet', async (t) => {
    const prefix = '/weft-test/dual';
    const conf = { Network: '10.14.0.0/16', EnableIPv6: true, IPv6Network: '2001:db8:1000::/56', Backend: { Type: 'vxlan' } };
    await network(prefix, conf);
    const dir = `${prefix}/subnets/`;
    const { logger, lines } = capturingLogger();
    const w = watchInto(manager(prefix, { logger }));
    t.teardown(w.stop);
    const vx = (n: number, v6: boolean, vni = 1): LeaseAttrs =>
      attrs(`198.51.100.${n}`, {
        backendType: 'vxlan',
        backendData: { VNI: vni, VtepMAC: `0e:00:00:00:04:0${n}` },
        ...(v6 ? { publicIPv6: IP.parse(`2001:db8::${n}`), backendV6Data: { VNI: vni, VtepMAC: `0e:00:00:00:06:0${n}` } } : {}),
      });
    const keyOf = (l: Lease) => `${dir}${l.subnet.toKey()}${l.ipv6Subnet ? `&${l.ipv6Subnet.toKey()}` : ''}`;

    // Acquire: flannel's dual key, flannel's value field order.
    const a = manager(prefix);
    const lease = await a.acquireLease(vx(1, true), {});
    const v6net = Cidr.parse('2001:db8:1000::/56');
    t.ok(lease.ipv6Subnet && v6net.covers(lease.ipv6Subnet) && lease.ipv6Subnet.prefixLen === 64, `IPv6 subnet ${lease.ipv6Subnet} is a /64 of IPv6Network`);
    const stored = await get(keyOf(lease));
    t.equal(
      stored?.value.toString(),
      '{"PublicIP":"198.51.100.1","PublicIPv6":"2001:db8::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:04:01"},"BackendV6Data":{"VNI":1,"VtepMAC":"0e:00:00:00:06:01"}}',
      `stored as ${keyOf(lease)} in flannel's field order`,
    );

    // Renew: both halves kept, a changed IPv6 half republished.
    const renewed = await a.renewLease({ ...lease, attrs: vx(1, true, 2) });
    t.same([String(renewed.subnet), String(renewed.ipv6Subnet)], [String(lease.subnet), String(lease.ipv6Subnet)], 'renewal keeps both subnets');
    t.match(JSON.parse((await get(keyOf(lease)))!.value.toString()), { PublicIPv6: '2001:db8::1', BackendV6Data: { VNI: 2 } }, 'the IPv6 half republished');
    t.type(await a.renewLease({ ...renewed, attrs: vx(1, false) }).catch((e: unknown) => e), LeaseGoneError, 'a renewal that would drop the IPv6 half asks for a re-acquire instead');

    // Upgrade: a node's IPv4-only key becomes a dual key with the same IPv4 subnet, in one etcd revision.
    const single = await manager(prefix).acquireLease(vx(2, false), {});
    t.equal(single.ipv6Subnet, undefined, 'without PublicIPv6 a lease stays IPv4-only');
    await waitFor('the IPv4-only lease seen', () => w.view.has(String(single.subnet)));
    const batches = w.batches.length;
    const upgraded = await manager(prefix).acquireLease(vx(2, true), {});
    t.equal(String(upgraded.subnet), String(single.subnet), 'upgrade keeps the IPv4 subnet');
    t.ok(upgraded.ipv6Subnet, 'and gains an IPv6 one');
    const moved = await get(keyOf(upgraded));
    t.equal(await get(keyOf(single)), undefined, 'the IPv4-only key is gone');
    const atCreate = await raw.kv.range({ key: Buffer.from(keyOf(single)), revision: Number(moved!.create_revision) - 1 });
    t.equal(atCreate.kvs.length, 1, 'the old key lived until the revision that made the new one: one transaction');
    await waitFor('the watcher to see the upgrade', () => w.view.get(String(single.subnet))?.ipv6Subnet !== undefined);
    t.same(
      w.batches.slice(batches).map((b) => b.events.map((e) => `${e.type} ${e.lease.subnet}${e.lease.ipv6Subnet ? `&${e.lease.ipv6Subnet}` : ''}`)),
      [[`removed ${single.subnet}`, `added ${single.subnet}&${upgraded.ipv6Subnet}`]],
      'peers see the swap in one batch',
    );

    // Downgrade: with IPv6 disabled the dual key goes back to IPv4-only, same IPv4 subnet.
    const v4conf = parseNetConf(JSON.stringify({ Network: conf.Network, Backend: conf.Backend }));
    const downgraded = await manager(prefix, { netConf: v4conf }).acquireLease(vx(2, true), {});
    t.same([String(downgraded.subnet), downgraded.ipv6Subnet, downgraded.attrs.publicIPv6], [String(single.subnet), undefined, undefined], 'downgrade keeps the IPv4 subnet, drops the IPv6 half');
    t.same(JSON.parse((await get(keyOf(downgraded)))!.value.toString()).PublicIPv6, undefined, 'no PublicIPv6 on an IPv4-only key');
    t.equal(await get(keyOf(upgraded)), undefined, 'the dual key is gone');

    // flannel-written dual keys: a peer's is read whole; a node's own is taken over keeping both subnets.
    const flannelValue = (n: number) =>
      `{"PublicIP":"198.51.100.${n}","PublicIPv6":"2001:db8::${n}","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"7a:00:00:00:04:0${n}"},"BackendV6Data":{"VNI":1,"VtepMAC":"7a:00:00:00:06:0${n}"}}`;
    await put(`${dir}10.14.50.0-24&2001:db8:1000:50::-64`, flannelValue(5), await grant(600));
    await put(`${dir}10.14.60.0-24&2001:db8:1000:60::-64`, flannelValue(6), await grant(600));
    await put(`${dir}10.14.70.0-24&2001:db8:2000::-64`, flannelValue(7), await grant(600)); // IPv6 half outside IPv6Network
    await waitFor('the flannel leases seen', () => w.view.has('10.14.50.0/24') && w.view.has('10.14.70.0/24'));
    const peer = w.view.get('10.14.50.0/24')!;
    t.same(
      [String(peer.ipv6Subnet), String(peer.attrs.publicIPv6), peer.attrs.backendV6Data],
      ['2001:db8:1000:50::/64', '2001:db8::5', { VNI: 1, VtepMAC: '7a:00:00:00:06:05' }],
      "a flannel peer's IPv6 half is read",
    );
    const takeover = await manager(prefix).acquireLease(vx(6, true), {});
    t.equal(`${takeover.subnet}&${takeover.ipv6Subnet}`, '10.14.60.0/24&2001:db8:1000:60::/64', "a flannel node's own dual key is taken over with both subnets");
    const outside = lines.filter((l) => l.level === 40 && l.key === `${dir}10.14.70.0-24&2001:db8:2000::-64`);
    t.same(
      outside.map((l) => l.reason),
      ['IPv6 half dropped: subnet 2001:db8:2000::/64 is outside IPv6Network 2001:db8:1000::/56'],
      'an IPv6 half outside IPv6Network: one warning naming the key, the subnet and the network',
    );
    t.equal(w.view.get('10.14.70.0/24')?.ipv6Subnet, undefined, 'its IPv4 half is still used');

    // `weft leases` shows both halves.
    const table = await captureStdout(() => leasesCli([`--etcd-endpoints=${etcd.endpoint}`, `--etcd-prefix=${prefix}`]));
    t.match(table.out, /\n10\.14\.50\.0\/24,2001:db8:1000:50::\/64\s+198\.51\.100\.5,2001:db8::5\s+vxlan\s/);
  });

  t.test("a flannel cluster's /coreos.com/network keys read unchanged", async (t) => {
    const prefix = '/coreos.com/network';
    await put(`${prefix}/config`, '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
    const flannelLease = await grant(600);
    const value = (ip: string, mac: string) =>
      `{"PublicIP":"${ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac}"}}`;
    await put(`${prefix}/subnets/10.244.1.0-24`, value('198.51.100.11', '7a:00:00:00:00:01'), flannelLease);
    await put(`${prefix}/subnets/10.244.2.0-24`, value('198.51.100.12', '7a:00:00:00:00:02'), await grant(600));
    await put(`${prefix}/subnets/10.244.3.0-24`, value('198.51.100.13', '7a:00:00:00:00:03')); // reservation

    const m = manager(prefix);
    const conf = await m.getNetworkConfig();
    t.equal(conf.network.toString(), '10.244.0.0/16');
    t.equal(conf.subnetLen, 24);
    const w = watchInto(m);
    t.teardown(w.stop);
    await waitFor('snapshot', () => w.batches.length > 0);
    t.ok(w.batches[0]!.snapshot);
    t.same([...w.view.keys()].sort(), ['10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24']);
    t.same(w.view.get('10.244.1.0/24')!.attrs.backendData, { VNI: 1, VtepMAC: '7a:00:00:00:00:01' });
    t.equal(w.ipOf('10.244.2.0/24'), '198.51.100.12');

    // A weft node replacing a flannel node keeps its subnet.
    const migrated = await manager(prefix).acquireLease(attrs('198.51.100.11', { backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: '7a:00:00:00:00:99' } }), {});
    t.equal(migrated.subnet.toString(), '10.244.1.0/24');

    const { leases } = await listLeases({ etcd: { endpoints: [etcd.endpoint], prefix }, logger: pino({ level: 'silent' }) });
    const byKey = new Map(leases.map((r) => [r.key, r]));
    const reservation = byKey.get(`${prefix}/subnets/10.244.3.0-24`);
    t.ok(reservation && 'lease' in reservation && reservation.lease.expiresAt === undefined);
    const leased = byKey.get(`${prefix}/subnets/10.244.2.0-24`);
    t.ok(leased && 'lease' in leased && leased.lease.expiresAt! > Date.now() + 500_000, 'TTL read from etcd');

    // `weft leases` prints the table and the JSON; invalid entries are listed with their reason.
    await put(`${prefix}/subnets/10.244.9.0-24`, '{"PublicIP":"198.51.100.19","BackendType":"ipsec"}');
    const table = await captureStdout(() => leasesCli([`--etcd-endpoints=${etcd.endpoint}`, `--etcd-prefix=${prefix}`]));
    t.equal(table.code, 0);
    t.match(table.out, /^SUBNET\s+PUBLIC-IP\s+BACKEND\s+NODE\s+TTL\n/);
    t.match(table.out, /10\.244\.2\.0\/24\s+198\.51\.100\.12\s+vxlan\s+-\s+\d+m\d\ds\n/);
    t.match(table.out, /10\.244\.3\.0\/24\s+198\.51\.100\.13\s+vxlan\s+-\s+reservation\n/);
    t.match(table.out, /\/coreos\.com\/network\/subnets\/10\.244\.9\.0-24 {2}invalid: unknown BackendType "ipsec"/);
    const json = await captureStdout(() => leasesCli([`--etcd-endpoints=${etcd.endpoint}`, `--etcd-prefix=${prefix}`, '--json']));
    const rows = JSON.parse(json.out) as Record<string, unknown>[];
    t.equal(rows.length, 4);
    t.match(rows.find((r) => r.subnet === '10.244.3.0/24'), { reservation: true, ttlSeconds: null, publicIP: '198.51.100.13' });
    t.match(rows.find((r) => r.key === `${prefix}/subnets/10.244.9.0-24`), { invalid: /ipsec/ });
  });
}

/** Runs a CLI command with its stdout captured (stdout is tap's stream here). */
async function captureStdout(fn: () => Promise<number>): Promise<{ code: number; out: string }> {
  const chunks: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    chunks.push(String(chunk));
    return true;
  }) as typeof process.stdout.write;
  try {
    const code = await fn();
    return { code, out: chunks.join('') };
  } finally {
    process.stdout.write = write;
  }
}
