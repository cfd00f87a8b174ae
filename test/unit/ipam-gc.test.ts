// The GC decision table, one case per row of the table in src/ipam/gc.ts.
import t from 'tap';
import { applyGc, decideGc, type GcSources } from '../../src/ipam/gc.js';
import { emptyState } from '../../src/ipam/state.js';
import type { Allocation } from '../../src/ipam/state.js';

const NOW = new Date('2026-01-01T12:00:00Z');
const GRACE = 60_000;
const OLD = '2026-01-01T11:00:00.000Z';
const YOUNG = '2026-01-01T11:59:30.000Z';

function alloc(extra: Partial<Allocation> = {}): Allocation {
  return {
    address: '10.244.3.2', family: 4, containerId: 'c1', ifname: 'eth0', netns: '/var/run/netns/c1',
    pod: { namespace: 'app', name: 'web-0', uid: 'u1' }, since: OLD, pinned: false, ...extra,
  };
}

const here = { namespace: 'app', name: 'web-0', uid: 'u1' };

const rows: Array<{ row: string; allocation: Allocation; sources: GcSources; want: string }> = [
  { row: 'runtime lists it', allocation: alloc(), sources: { validAttachments: [{ containerID: 'c1', ifname: 'eth0' }] }, want: 'keep' },
  { row: 'runtime does not list it', allocation: alloc(), sources: { validAttachments: [{ containerID: 'c2', ifname: 'eth0' }] }, want: 'not-attached' },
  { row: 'runtime lists the container on another interface', allocation: alloc(), sources: { validAttachments: [{ containerID: 'c1', ifname: 'net1' }] }, want: 'not-attached' },
  { row: 'runtime list empty: everything goes', allocation: alloc(), sources: { validAttachments: [] }, want: 'not-attached' },
  { row: 'runtime is authoritative, even for a young allocation', allocation: alloc({ since: YOUNG }), sources: { validAttachments: [] }, want: 'not-attached' },
  { row: 'netns exists', allocation: alloc(), sources: { existingNetns: new Set(['/var/run/netns/c1']) }, want: 'keep' },
  { row: 'netns gone', allocation: alloc(), sources: { existingNetns: new Set() }, want: 'netns-gone' },
  { row: 'netns gone but young', allocation: alloc({ since: YOUNG }), sources: { existingNetns: new Set() }, want: 'keep' },
  { row: 'no netns recorded', allocation: alloc({ netns: '' }), sources: { existingNetns: new Set() }, want: 'keep' },
  { row: 'pod on this node', allocation: alloc(), sources: { pods: [here] }, want: 'keep' },
  { row: 'pod gone', allocation: alloc(), sources: { pods: [] }, want: 'pod-gone' },
  { row: 'pod gone but young', allocation: alloc({ since: YOUNG }), sources: { pods: [] }, want: 'keep' },
  { row: 'pod of that name with another uid', allocation: alloc(), sources: { pods: [{ ...here, uid: 'u2' }] }, want: 'pod-replaced' },
  { row: 'pod of that name, uid not recorded', allocation: alloc({ pod: { namespace: 'app', name: 'web-0' } }), sources: { pods: [{ ...here, uid: 'u2' }] }, want: 'keep' },
  { row: 'no pod recorded', allocation: alloc({ pod: undefined }), sources: { pods: [] }, want: 'keep' },
  { row: 'an unreadable time counts as old', allocation: alloc({ since: 'garbage' }), sources: { pods: [] }, want: 'pod-gone' },
  { row: 'no source known', allocation: alloc(), sources: {}, want: 'keep' },
  { row: 'the first matching row gives the reason', allocation: alloc(), sources: { validAttachments: [], existingNetns: new Set(), pods: [] }, want: 'not-attached' },
  { row: 'netns before pods', allocation: alloc(), sources: { existingNetns: new Set(), pods: [] }, want: 'netns-gone' },
  { row: 'one source saying gone is enough', allocation: alloc(), sources: { existingNetns: new Set(['/var/run/netns/c1']), pods: [] }, want: 'pod-gone' },
];

t.test('each row of the decision table', async (t) => {
  const got = rows.map((r) => `${r.row}: ${decideGc([r.allocation], NOW, r.sources, GRACE)[0]?.reason ?? 'keep'}`);
  t.same(got, rows.map((r) => `${r.row}: ${r.want}`));
});

t.test('the decision names the allocation it frees, and keeps the rest', async (t) => {
  const a = alloc({ containerId: 'gone', netns: '/var/run/netns/gone' });
  const b = alloc({ containerId: 'here', address: '10.244.3.3' });
  const out = decideGc([a, b], NOW, { existingNetns: new Set([b.netns]) }, GRACE);
  t.same(out, [{ allocation: a, reason: 'netns-gone' }]);
});

t.test('200 stale allocations of a crashed node are all chosen in one pass', async (t) => {
  const stale = Array.from({ length: 200 }, (_, i) => alloc({ containerId: `c${i}`, netns: `/var/run/netns/c${i}` }));
  t.equal(decideGc(stale, NOW, { existingNetns: new Set() }, GRACE).length, 200);
});

t.test('applying a decision frees the allocation, keeps a pinned one as a reservation and records the outcome', async (t) => {
  const plain = alloc({ containerId: 'plain', address: '10.244.3.2' });
  const pinned = alloc({ containerId: 'pinned', address: '10.244.3.17', pinned: true, mac: '02:00:00:00:00:17' });
  const kept = alloc({ containerId: 'kept', address: '10.244.3.3' });
  const state = { ...emptyState(), allocations: [plain, pinned, kept] };
  const next = applyGc(state, decideGc(state.allocations, NOW, { validAttachments: [{ containerID: 'kept', ifname: 'eth0' }] }, GRACE), NOW);
  t.same([
    next.allocations.map((a) => a.containerId),
    next.reservations.map((r) => [r.address, r.pod.name, r.mac]),
    next.lastReconcile,
  ], [
    ['kept'],
    [['10.244.3.17', 'web-0', '02:00:00:00:00:17']],
    { at: NOW.toISOString(), freed: [
      { address: '10.244.3.2', containerId: 'plain', pod: { namespace: 'app', name: 'web-0', uid: 'u1' }, reason: 'not-attached' },
      { address: '10.244.3.17', containerId: 'pinned', pod: { namespace: 'app', name: 'web-0', uid: 'u1' }, reason: 'not-attached' },
    ] },
  ]);
});
