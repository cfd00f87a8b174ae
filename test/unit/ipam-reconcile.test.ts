// The agent's IPAM pass over real stores in a temp dir: reclaiming by netns
// and pod, netns directories it cannot see, borrowedOut kept equal to what
// peers borrow, reservations of moved pods, damaged stores, and the
// borrowed addresses the node publishes.
import t, { type Test } from 'tap';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Cidr, IP } from '../../src/core/cidr.js';
import { parseNetConf } from '../../src/config/parse.js';
import { NodeIpam } from '../../src/agent/ipam.js';
import { networkStores, reconcileStore, storeOf, visibleNetns } from '../../src/agent/ipam-reconcile.js';
import { emptyState, type Allocation, type IpamState } from '../../src/ipam/state.js';
import { readState, writeState } from '../../src/ipam/store.js';
import type { Lease, LeaseAttrs } from '../../src/subnet/lease.js';
import type { NodePod } from '../../src/ipam/gc.js';

const NOW = new Date('2026-01-01T12:00:00Z');
const OLD = '2026-01-01T11:00:00.000Z';
const YOUNG = '2026-01-01T11:59:30.000Z';
const GRACE = 60_000;

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'ia-reconcile-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function alloc(n: number, extra: Partial<Allocation> = {}): Allocation {
  return {
    address: `10.5.1.${n}`, family: 4, containerId: `c${n}`, ifname: 'eth0', netns: `/run/netns/p${n}`,
    pod: { namespace: 'app', name: `p${n}`, uid: `u${n}` }, since: OLD, pinned: false, ...extra,
  };
}

function store(dir: string, state: Partial<IpamState>, network = 'weft') {
  const s = storeOf(dir, network);
  writeState(s.paths.state, { ...emptyState(), ...state });
  return s;
}

const exists = (present: string[]) => (path: string) => present.includes(path);

t.test('visibleNetns: existing and unseeable paths count as existing; missing ones in a visible directory do not', async (t) => {
  const v = visibleNetns(['/run/netns/a', '/run/netns/b', '/other/ns/c', '/proc/42/ns/net', '/proc/43/ns/net', ''], exists(['/run/netns', '/run/netns/a', '/proc', '/proc/42/ns/net']));
  t.same({ existing: [...v.existing].sort(), hidden: v.hidden }, { existing: ['/other/ns/c', '/proc/42/ns/net', '/run/netns/a'], hidden: ['/other/ns'] });
});

t.test('networkStores: each directory holding a state.json, by name; none when the directory is missing', async (t) => {
  const dir = tempDir(t);
  store(dir, {}, 'b-net');
  store(dir, {}, 'a-net');
  mkdirSync(join(dir, 'empty'));
  t.same([networkStores(dir).map((s) => s.network), networkStores(join(dir, 'missing'))], [['a-net', 'b-net'], []]);
});

t.test('reconcileStore frees allocations whose netns or pod is gone (past the grace), records them, and keeps the rest', async (t) => {
  const dir = tempDir(t);
  const s = store(dir, {
    allocations: [
      alloc(2), // netns exists, pod here
      alloc(3), // netns gone
      alloc(4, { since: YOUNG }), // netns gone but young
      alloc(5), // pod gone
      alloc(6, { pinned: true }), // pod gone, pinned: becomes a reservation
      alloc(7, { pod: { namespace: 'app', name: 'p7', uid: 'old' } }), // replaced
    ],
  });
  const pods: NodePod[] = [2, 3, 4, 7].map((n) => ({ namespace: 'app', name: `p${n}`, uid: `u${n}` }));
  const netns = ['/run/netns', '/run/netns/p2', '/run/netns/p5', '/run/netns/p6', '/run/netns/p7'];
  const out = reconcileStore(s, { now: NOW, gc: { graceMs: GRACE, existingNetns: (p) => visibleNetns(p, exists(netns)).existing, pods } });
  const after = readState(s.paths.state);
  t.same(
    {
      freed: out.freed.map((d) => `${d.allocation.address} ${d.reason}`),
      left: after.allocations.map((a) => a.address),
      reserved: after.reservations.map((r) => `${r.address} ${r.pod.name}`),
      recorded: after.lastReconcile?.freed.map((f) => f.address),
      at: after.lastReconcile?.at,
    },
    {
      freed: ['10.5.1.3 netns-gone', '10.5.1.5 pod-gone', '10.5.1.6 pod-gone', '10.5.1.7 pod-replaced'],
      left: ['10.5.1.2', '10.5.1.4'],
      reserved: ['10.5.1.6 p6'],
      recorded: ['10.5.1.3', '10.5.1.5', '10.5.1.6', '10.5.1.7'],
      at: NOW.toISOString(),
    },
  );
});

t.test('reconcileStore: 200 stale allocations of a /24 go in one pass', async (t) => {
  const dir = tempDir(t);
  const allocations = Array.from({ length: 200 }, (_, i) => alloc(i + 2));
  const s = store(dir, { allocations });
  const out = reconcileStore(s, { now: NOW, gc: { graceMs: GRACE, existingNetns: (p) => visibleNetns(p, exists(['/run/netns'])).existing } });
  t.same([out.freed.length, readState(s.paths.state).allocations.length], [200, 0]);
});

t.test('reconcileStore keeps borrowedOut equal to what peers borrow, and drops the reservation of a pod that moved', async (t) => {
  const dir = tempDir(t);
  const s = store(dir, {
    borrowedOut: ['10.5.1.40'],
    reservations: [
      { address: '10.5.1.17', family: 4, pod: { namespace: 'app', name: 'db-0' }, since: OLD },
      { address: '10.5.1.18', family: 4, pod: { namespace: 'app', name: 'db-1' }, since: OLD },
    ],
  });
  const out = reconcileStore(s, { now: NOW, borrowedOut: [IP.parse('10.5.1.17'), IP.parse('10.5.1.30'), IP.parse('10.5.1.30')] });
  const after = readState(s.paths.state);
  t.same(
    { lent: out.lent, returned: out.returned, moved: out.moved.map((r) => r.address), borrowedOut: after.borrowedOut, reservations: after.reservations.map((r) => r.address), reconciled: after.lastReconcile },
    { lent: ['10.5.1.17', '10.5.1.30'], returned: ['10.5.1.40'], moved: ['10.5.1.17'], borrowedOut: ['10.5.1.17', '10.5.1.30'], reservations: ['10.5.1.18'], reconciled: undefined },
  );
});

t.test('reconcileStore throws on a damaged store and leaves it as it is', async (t) => {
  const dir = tempDir(t);
  const s = storeOf(dir, 'weft');
  mkdirSync(s.paths.dir, { recursive: true });
  writeFileSync(s.paths.state, '{"version": 1, "allocations": ');
  t.throws(() => reconcileStore(s, { now: NOW, gc: { graceMs: GRACE } }), { name: 'WeftError', message: /is corrupt/ });
});

// --- NodeIpam: the agent's loop around it -------------------------------------

const conf = parseNetConf(JSON.stringify({ Network: '10.5.0.0/16', Backend: { Type: 'host-gw' } }));
function lease(n: number, borrowed: string[] = []): Lease {
  const attrs: LeaseAttrs = { publicIP: IP.parse(`192.0.2.${n}`), backendType: 'host-gw', backendData: null, nodeName: `n${n}` };
  if (borrowed.length) attrs.borrowedIPs = borrowed.map((b) => Cidr.parse(b));
  return { subnet: Cidr.parse(`10.5.${n}.0/24`), attrs };
}

function nodeIpam(t: Test, dir: string, opts: { pods?: NodePod[]; netns?: string[] } = {}) {
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  const published: string[][] = [];
  const proxied: string[][] = [];
  const ipam = new NodeIpam({
    ipamDir: dir,
    intervalMs: 3_600_000,
    graceMs: GRACE,
    logger,
    ...(opts.pods ? { pods: { nodePods: () => opts.pods, holderOf: () => undefined, listed: () => true, getPod: async () => undefined } } : {}),
    own: () => lease(1),
    config: () => conf,
    publishBorrowed: async (ips) => void published.push(ips.map(String).sort()),
    lentNeighbours: async (lent) => {
      proxied.push(lent.map(String));
      return { added: lent.map(String), removed: [] };
    },
    now: () => NOW,
    exists: (p) => (opts.netns ?? ['/run/netns']).includes(p),
  });
  return { ipam, lines, published, proxied };
}

t.test('NodeIpam.reconcile: one line per freed address, a summary, metrics by reason and family', async (t) => {
  const dir = tempDir(t);
  store(dir, { allocations: [alloc(2), alloc(3), alloc(4, { address: '2001:db8::4', family: 6, netns: '' })] });
  const { ipam, lines } = nodeIpam(t, dir, { pods: [{ namespace: 'app', name: 'p4', uid: 'u4' }], netns: ['/run/netns', '/run/netns/p2'] });
  await ipam.reconcile();
  const samples = Object.fromEntries(ipam.metrics().flatMap((f) => f.samples.map((s) => [`${f.name}${s.labels ? JSON.stringify(s.labels) : ''}`, s.value])));
  t.same(
    {
      lines: lines.filter((l) => /IPAM re/.test(l.msg)).map((l) => l.msg),
      reclaimed: [samples['weft_ipam_reclaimed_addresses_total{"reason":"netns-gone"}'], samples['weft_ipam_reclaimed_addresses_total{"reason":"pod-gone"}']],
      allocations: [samples['weft_ipam_allocations{"family":"ipv4"}'], samples['weft_ipam_allocations{"family":"ipv6"}']],
      last: samples.weft_ipam_last_reconcile_timestamp_seconds,
    },
    {
      lines: [
        'IPAM reclaimed 10.5.1.2 of container c2 (pod app/p2): pod-gone',
        'IPAM reclaimed 10.5.1.3 of container c3 (pod app/p3): netns-gone',
        'IPAM reconcile freed 2 addresses; 1 allocated on this node',
      ],
      reclaimed: [1, 1],
      allocations: [0, 1],
      last: NOW.getTime() / 1000,
    },
  );
});

t.test('NodeIpam.reconcile: a damaged store is one line, said once, and the other stores are still reconciled', async (t) => {
  const dir = tempDir(t);
  store(dir, { allocations: [alloc(3)] }, 'good');
  const bad = storeOf(dir, 'bad');
  mkdirSync(bad.paths.dir, { recursive: true });
  writeFileSync(bad.paths.state, 'garbage');
  const { ipam, lines } = nodeIpam(t, dir);
  await ipam.reconcile();
  await ipam.reconcile();
  const errors = lines.filter((l) => l.level >= 50).map((l) => l.msg.replace(/\(not JSON.*\)/, '(not JSON...)'));
  t.same([errors, readState(storeOf(dir, 'good').paths.state).allocations.length], [
    [`IPAM network bad not reconciled: IPAM state ${bad.paths.state} is corrupt (not JSON...); weft will not guess which addresses are in use; restore the file, or remove it once no pod on this node holds an address from it; its pods are left as they are`],
    0,
  ]);
});

t.test('NodeIpam: a netns directory the agent cannot see is said once and its allocations are kept', async (t) => {
  const dir = tempDir(t);
  store(dir, { allocations: [alloc(3, { netns: '/var/run/netns/p3' })] });
  const { ipam, lines } = nodeIpam(t, dir, { netns: [] });
  await ipam.reconcile();
  await ipam.reconcile();
  t.same([lines.filter((l) => l.level === 40).map((l) => l.msg), readState(storeOf(dir, 'weft').paths.state).allocations.length], [
    ['IPAM reconcile: network namespaces under /var/run/netns are not visible to the agent, so their allocations are not checked; mount /var/run/netns into the agent to reclaim them'],
    1,
  ]);
});

t.test('NodeIpam publishes the allocations outside its subnet as borrowed /32s (at each reconcile and sync), skipping unusable ones', async (t) => {
  const dir = tempDir(t);
  store(dir, { allocations: [alloc(3, { netns: '' }), alloc(4, { address: '10.5.2.17', netns: '', pinned: true }), alloc(5, { address: '10.9.0.1', netns: '' })] });
  const { ipam, published, lines } = nodeIpam(t, dir);
  await ipam.reconcile();
  store(dir, { allocations: [alloc(3, { netns: '' })] });
  await ipam.sync();
  const samples = ipam.metrics().find((f) => f.name === 'weft_ipam_borrowed_addresses')!.samples[0]!.value;
  t.same({ published, samples, warned: lines.filter((l) => l.level === 40).map((l) => l.msg) }, {
    published: [['10.5.2.17/32'], []],
    samples: 0,
    warned: ['IPAM: not publishing 10.9.0.1 of container c5: outside Network 10.5.0.0/16'],
  });
});

t.test('NodeIpam.peersChanged: addresses peers borrow from this subnet go into borrowedOut, and come out when dropped', async (t) => {
  const dir = tempDir(t);
  const s = store(dir, { reservations: [{ address: '10.5.1.17', family: 4, pod: { namespace: 'app', name: 'db-0' }, since: OLD }] });
  const { ipam, lines, proxied } = nodeIpam(t, dir);
  await ipam.reconcile(); // before the first snapshot borrowedOut is left alone
  const before = readState(s.paths.state).borrowedOut;
  ipam.peersChanged([lease(2, ['10.5.1.17/32', '10.5.3.9/32']), lease(3)]);
  await ipam.reconcile();
  const lentState = readState(s.paths.state);
  ipam.peersChanged([lease(2), lease(3)]);
  await ipam.reconcile();
  t.same(
    { before, lent: lentState.borrowedOut, reservations: lentState.reservations, after: readState(s.paths.state).borrowedOut, proxied, said: lines.filter((l) => /borrowed by another node|reservation/.test(l.msg)).map((l) => l.msg) },
    {
      before: [],
      proxied: [['10.5.1.17'], ['10.5.1.17'], [], []],
      lent: ['10.5.1.17'],
      reservations: [],
      after: [],
      said: [
        'IPAM: 10.5.1.17 is borrowed by another node; not handed out here while it is',
        'IPAM: reservation of 10.5.1.17 for pod app/db-0 dropped: another node holds it for the pod now',
        'IPAM: 10.5.1.17 is no longer borrowed by another node; free here again',
      ],
    },
  );
});

t.test('NodeIpam.run: reconciles at start, serves the pins socket in kube mode, leaves a placeholder that is not a socket when stopped', async (t) => {
  const dir = tempDir(t);
  store(dir, { allocations: [alloc(3)] });
  const socketPath = join(dir, 'weft-ipam.sock');
  const logger = pino({ level: 'silent' });
  const pods = { nodePods: () => [], holderOf: () => undefined, listed: () => true, getPod: async () => undefined };
  const ipam = new NodeIpam({
    ipamDir: dir, intervalMs: 3_600_000, graceMs: GRACE, logger, pods, socketPath,
    own: () => lease(1), config: () => conf, publishBorrowed: async () => undefined, now: () => NOW, exists: (p) => p === '/run/netns',
  });
  const stop = new AbortController();
  const running = ipam.run(stop.signal);
  const served = await new Promise<number>((resolve) => {
    const poll = (): void => {
      const req = request({ socketPath, path: '/v1/pods/app/x' }, (res) => resolve(res.statusCode ?? 0));
      req.on('error', () => setTimeout(poll, 20));
      req.end();
    };
    poll();
  });
  stop.abort();
  await running;
  t.same(
    { served, reclaimed: readState(storeOf(dir, 'weft').paths.state).allocations.length, socket: statSync(socketPath).isSocket() },
    { served: 404, reclaimed: 0, socket: false },
  );
});

t.test('NodeIpam.run outside kube mode removes a placeholder left by a kube-mode agent, so pods are not held back', async (t) => {
  const dir = tempDir(t);
  const socketPath = join(dir, 'weft-ipam.sock');
  writeFileSync(socketPath, '');
  const ipam = new NodeIpam({
    ipamDir: dir, intervalMs: 3_600_000, graceMs: GRACE, logger: pino({ level: 'silent' }), socketPath,
    own: () => lease(1), config: () => conf, publishBorrowed: async () => undefined, now: () => NOW, exists: (p) => p === '/run/netns',
  });
  const stop = new AbortController();
  const running = ipam.run(stop.signal);
  await ipam.reconcile();
  stop.abort();
  await running;
  t.equal(existsSync(socketPath), false);
});
