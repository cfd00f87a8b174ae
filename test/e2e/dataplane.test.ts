// The reconciler against a real kernel, in a scratch namespace: routes,
// ownership, restoration through (netlink) kernel events, a vxlan device with its
// neighbour/FDB entries, one process per tool per batch. Needs root.
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { pino } from 'pino';
import { Iproute, type Tool } from '../../src/dataplane/iproute.js';
import { Reconciler } from '../../src/dataplane/reconciler.js';
import { createScratchNamespace, removeNamespaces, sh } from './support/scratch-ns.js';
import type { DesiredState } from '../../src/dataplane/state.js';

const NS = 'wdp-rc-node';
const MAC_SELF = '0e:57:00:00:00:01';
const PEERS = [
  { subnet: '10.100.2.0/24', gw: '10.100.2.0', mac: '0e:57:00:00:00:02', underlay: '10.99.0.2' },
  { subnet: '10.100.3.0/24', gw: '10.100.3.0', mac: '0e:57:00:00:00:03', underlay: '10.99.0.3' },
];

const ip = (...args: string[]) => sh('ip', ['-n', NS, ...args]);
const ipJson = (...args: string[]): any[] => JSON.parse(sh('ip', ['-n', NS, '-json', ...args]) || '[]');
const fdbJson = (dev: string): any[] => JSON.parse(sh('bridge', ['-n', NS, '-json', 'fdb', 'show', 'dev', dev]) || '[]');

const cleanup = () => removeNamespaces('wdp-rc-');

function hostgw(): DesiredState {
  return {
    links: [], addrs: [], neighs: [], fdb: [],
    routes: [2, 3, 4].map((n) => ({ dst: `10.100.${n}.0/24`, via: `10.99.0.${n}`, dev: 'eth0' })),
  };
}

function vxlan(): DesiredState {
  return {
    links: [{ name: 'weft.42', spec: { kind: 'vxlan', vni: 42, port: 8472, local: '10.99.0.1', dev: 'eth0', learning: false }, mtu: 1450, mac: MAC_SELF }],
    addrs: [{ dev: 'weft.42', cidr: '10.100.1.0/32' }],
    neighs: PEERS.map((p) => ({ dev: 'weft.42', ip: p.gw, mac: p.mac })),
    fdb: PEERS.map((p) => ({ dev: 'weft.42', mac: p.mac, dst: p.underlay })),
    routes: PEERS.map((p) => ({ dst: p.subnet, via: p.gw, dev: 'weft.42', onlink: true })),
  };
}

/** Polls `cond` until true; returns the milliseconds it took. */
async function waitFor(cond: () => boolean, what: string, deadlineMs = 10_000): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > deadlineMs) throw new Error(`not within ${deadlineMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - start;
}

const weftRoutes = () => ipJson('route', 'show', 'proto', '147').map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}${r.flags.includes('onlink') ? ' onlink' : ''}`).sort();

if (process.getuid?.() !== 0) {
  t.fail('this test needs root (network namespaces); run it as root');
} else {
  createScratchNamespace(NS, 'wdp-rc-');
  t.teardown(cleanup);

  const spawned: { tool: Tool; purpose: string }[] = [];
  const kernel = new Iproute({ netns: NS, onSpawn: (i) => spawned.push({ tool: i.tool, purpose: i.purpose }) });
  const logger = pino({ level: 'silent' });
  const writes = () => spawned.filter((s) => s.purpose === 'write');

  t.test('host-gw routes: one process per batch, ownership, idempotence', async (t) => {
    ip('route', 'add', '10.200.0.0/24', 'via', '10.99.0.9'); // foreign, other prefix
    ip('route', 'add', '10.100.4.0/24', 'via', '10.99.0.8'); // foreign, a desired prefix
    ip('route', 'add', '10.150.0.0/24', 'via', '10.99.0.5', 'proto', '147'); // stale weft route
    const r = new Reconciler({ logger, kernel });
    r.setDesired(hostgw());
    spawned.length = 0;
    const res = await r.reconcileNow();
    t.same(writes().map((w) => w.tool), ['ip'], 'one ip process for the whole batch');
    t.equal(res.applied, 3, 'two routes added, one stale removed');
    t.same(weftRoutes(), ['10.100.2.0/24 via 10.99.0.2 dev eth0', '10.100.3.0/24 via 10.99.0.3 dev eth0']);
    t.same(ipJson('route', 'show', '10.200.0.0/24').map((x) => x.gateway), ['10.99.0.9'], 'foreign route to another prefix left alone');
    t.same(ipJson('route', 'show', '10.100.4.0/24').map((x) => [x.gateway, x.protocol]), [['10.99.0.8', undefined]], 'foreign route to a desired prefix left alone');
    t.same(r.status().conflicts, ['10.100.4.0/24'], 'reported as a conflict');

    spawned.length = 0;
    t.same(await r.reconcileNow(), { applied: 0, failed: 0 });
    t.same(writes(), [], 'second run: no write process at all');
    ip('route', 'del', '10.100.4.0/24');
    ip('route', 'del', '10.200.0.0/24');
  });

  t.test('a weft route deleted by hand comes back through kernel events', async (t) => {
    const r = new Reconciler({ logger, kernel, resyncMs: 60_000 }); // so only the event path can be quick
    r.setDesired(hostgw());
    await r.reconcileNow();
    r.start();
    t.teardown(() => r.stop());
    t.equal(r.eventSource, 'netlink', 'events come from the netlink socket (subscribed before start() returns)');
    t.equal(r.monitorPid, undefined, 'no ip monitor process');
    const want = weftRoutes();
    t.equal(want.length, 3);

    const start = Date.now();
    ip('route', 'del', '10.100.2.0/24');
    await waitFor(() => weftRoutes().length === 3, 'route restored');
    t.comment(`route deleted by hand restored in ${Date.now() - start} ms`);
    t.same(weftRoutes(), want);

    // A burst of 5000 unrelated route changes in one batch: whether or not
    // the socket overruns, a weft route deleted afterwards comes back.
    const burst = Array.from({ length: 2500 }, (_, i) => `route add 10.210.${i >> 8}.${i & 255}/32 via 10.99.0.9`);
    const flush = Array.from({ length: 2500 }, (_, i) => `route del 10.210.${i >> 8}.${i & 255}/32`);
    const batch = spawnSync('ip', ['-n', NS, '-batch', '-'], { input: [...burst, ...flush].join('\n') + '\n', encoding: 'utf8' });
    t.equal(batch.status, 0, `5000 unrelated route changes applied ${batch.stderr}`);
    const start2 = Date.now();
    ip('route', 'del', '10.100.3.0/24');
    await waitFor(() => weftRoutes().length === 3, 'route restored after a burst of events');
    t.comment(`after a burst of 5000 events: restored in ${Date.now() - start2} ms`);
    await r.stop();
    t.equal(r.eventSource, undefined);
  });

  t.test('vxlan device, neighbours, FDB entries and onlink routes; restored when deleted by hand', async (t) => {
    const r = new Reconciler({ logger, kernel, resyncMs: 60_000 });
    r.setDesired(vxlan()); // host-gw routes of the previous test are now stale
    spawned.length = 0;
    await r.reconcileNow();
    // A new device: ip (link, addresses, neighbours), bridge (FDB), ip (routes) — never a process per entry.
    const order = writes().map((w) => w.tool);
    t.same(order, ['ip', 'bridge', 'ip'], `three write processes for a new device, routes last (${order.join(', ')})`);

    const [link] = ipJson('-d', 'link', 'show', 'dev', 'weft.42');
    const info = link.linkinfo.info_data;
    t.same([link.linkinfo.info_kind, info.id, info.port, info.local, info.link, info.learning, link.mtu, link.address, link.flags.includes('UP')],
      ['vxlan', 42, 8472, '10.99.0.1', 'eth0', false, 1450, MAC_SELF, true]);
    const ifindex = link.ifindex;
    const state = () => ({
      addrs: ipJson('addr', 'show', 'dev', 'weft.42').flatMap((l) => l.addr_info).filter((a: any) => a.scope === 'global').map((a: any) => `${a.local}/${a.prefixlen}`),
      neighs: ipJson('neigh', 'show', 'dev', 'weft.42', 'nud', 'permanent').map((n) => `${n.dst} ${n.lladdr}`).sort(),
      fdb: fdbJson('weft.42').filter((f) => f.dst).map((f) => `${f.mac} ${f.dst}`).sort(),
      routes: weftRoutes(),
    });
    const full = {
      addrs: ['10.100.1.0/32'],
      neighs: PEERS.map((p) => `${p.gw} ${p.mac}`).sort(),
      fdb: PEERS.map((p) => `${p.mac} ${p.underlay}`).sort(),
      routes: PEERS.map((p) => `${p.subnet} via ${p.gw} dev weft.42 onlink`).sort(),
    };
    t.same(state(), full, 'everything in place; stale host-gw routes gone');
    const matches = (want: typeof full): boolean => {
      try {
        return JSON.stringify(state()) === JSON.stringify(want);
      } catch {
        return false; // the device is being recreated
      }
    };
    const fdbCount = (): number => {
      try {
        return fdbJson('weft.42').filter((f) => f.dst).length;
      } catch {
        return -1;
      }
    };

    spawned.length = 0;
    t.same(await r.reconcileNow(), { applied: 0, failed: 0 });
    t.same(writes(), [], 'identical device kept, nothing rewritten');

    r.start();
    t.teardown(() => r.stop());

    let start = Date.now();
    sh('bridge', ['-n', NS, 'fdb', 'del', PEERS[0]!.mac, 'dev', 'weft.42', 'dst', PEERS[0]!.underlay, 'self']);
    await waitFor(() => fdbCount() === 2, 'FDB entry restored');
    t.comment(`FDB entry deleted by hand restored in ${Date.now() - start} ms`);

    start = Date.now();
    ip('neigh', 'del', PEERS[1]!.gw, 'dev', 'weft.42');
    await waitFor(() => ipJson('neigh', 'show', 'dev', 'weft.42', 'nud', 'permanent').length === 2, 'neighbour restored');
    t.comment(`neighbour deleted by hand restored in ${Date.now() - start} ms`);

    start = Date.now();
    ip('link', 'del', 'weft.42');
    await waitFor(() => matches(full), 'device recreated with every entry');
    t.comment(`device deleted by hand recreated with all entries in ${Date.now() - start} ms`);
    t.not(ipJson('link', 'show', 'dev', 'weft.42')[0].ifindex, ifindex, 'it is a new device');

    // A changed VNI recreates the device; the same spec again does not.
    const v2 = vxlan();
    v2.links[0]!.spec = { ...v2.links[0]!.spec, vni: 43 } as DesiredState['links'][0]['spec'];
    r.setDesired(v2);
    const vni = (): number | undefined => {
      try {
        return ipJson('-d', 'link', 'show', 'dev', 'weft.42')[0]?.linkinfo?.info_data?.id;
      } catch {
        return undefined;
      }
    };
    await waitFor(() => vni() === 43 && matches(full), 'VNI changed, entries replayed on the new device');
    t.ok(vni() === 43 && matches(full), 'a changed VNI recreates the device with every entry');
    await r.stop();
  });

  t.test('FDB entries are read in the links\' round for the vxlan links seen before; a new link after it, a gone one dropped', async (t) => {
    const reads: string[] = [];
    const k = new Iproute({ netns: NS, onSpawn: (i) => reads.push(i.tool) });
    const addVxlan = (name: string, vni: number, mac: string): void => {
      ip('link', 'add', name, 'type', 'vxlan', 'id', String(vni), 'dstport', '8472', 'dev', 'eth0', 'nolearning');
      sh('bridge', ['-n', NS, 'fdb', 'append', mac, 'dev', name, 'dst', '10.99.0.7', 'self', 'permanent']);
    };
    const mine = (snap: Awaited<ReturnType<Iproute['snapshot']>>): string[] => snap.fdb.filter((e) => e.dev.startsWith('weft.7')).map((e) => `${e.dev} ${e.mac}`).sort();
    const round = async (): Promise<{ fdb: string[]; bridgeReads: number }> => {
      reads.length = 0;
      const snap = await k.snapshot();
      return { fdb: mine(snap), bridgeReads: reads.filter((r) => r === 'bridge').length };
    };
    t.teardown(() => {
      for (const l of ['weft.71', 'weft.72']) spawnSync('ip', ['-n', NS, 'link', 'del', l], { stdio: 'ignore' });
    });
    addVxlan('weft.71', 71, '0e:57:00:00:07:01');
    const first = await round();
    addVxlan('weft.72', 72, '0e:57:00:00:07:02');
    const second = await round();
    ip('link', 'del', 'weft.71');
    const third = await round();
    const fourth = await round();
    t.same([first, second, third, fourth], [
      // First: no link known yet, so the FDB is read once the links are.
      { fdb: ['weft.71 0e:57:00:00:07:01'], bridgeReads: 1 },
      // weft.71 (and weft.42 from the tests before) read alongside the links, the new weft.72 after them.
      { fdb: ['weft.71 0e:57:00:00:07:01', 'weft.72 0e:57:00:00:07:02'], bridgeReads: 2 },
      // weft.71 is gone: its read fails quietly and nothing of it remains.
      { fdb: ['weft.72 0e:57:00:00:07:02'], bridgeReads: 1 },
      { fdb: ['weft.72 0e:57:00:00:07:02'], bridgeReads: 1 },
    ], 'every vxlan link\'s FDB entries, in one round of reads once its link is known');
  });

  t.test('teardown removes weft routes and links, nothing else', async (t) => {
    ip('route', 'add', '10.201.0.0/24', 'via', '10.99.0.9');
    ip('tuntap', 'add', 'weft0', 'mode', 'tun');
    const r = new Reconciler({ logger, kernel });
    r.setDesired(vxlan());
    await r.reconcileNow();
    await r.teardown();
    t.same(weftRoutes(), []);
    t.same(ipJson('link', 'show').map((l) => l.ifname).filter((n: string) => n.startsWith('weft')), [], 'vxlan and TUN links gone');
    t.same(ipJson('route', 'show', '10.201.0.0/24').length, 1, 'foreign route kept');
    t.same(ipJson('link', 'show').map((l) => l.ifname).sort(), ['eth0', 'eth1', 'lo']);
  });

  t.test('a namespace that does not exist: one clear line', async (t) => {
    const r = new Reconciler({ logger, netns: 'wdp-rc-missing' });
    r.setDesired(hostgw());
    await t.rejects(r.reconcileNow(), { name: 'WeftError', message: /network namespace "wdp-rc-missing" does not exist/ });
  });
}
