// Borrowed addresses end to end on host-gw: a node's lease gains a host
// route of another node's subnet (as the IPAM side will publish for a pinned
// pod that moved), and every other node routes it to that node, the lending
// node included; the route goes when the lease drops it. Routes only: pods
// with pinned addresses need the IPAM side. Times are reported, not asserted.
import t from 'tap';
import { Lab, type LabNode } from '../../src/lab/lab.js';
import { WEFT_ROUTE_PROTO } from '../../src/dataplane/state.js';
import { freshLab, routesOf, waitUntil } from './support/lab-fixture.js';

const PREFIX = '/weft/network';
const PROTO = String(WEFT_ROUTE_PROTO);
/** Generous: agents on a loaded 2-core machine. */
const CONVERGE_MS = 20_000;

/** weft's host routes on a node (ip route prints them without "/32"), as "dst/32 via gateway dev eth0". */
async function borrowedRoutes(lab: Lab, node: LabNode): Promise<string[]> {
  return (await routesOf(lab, node))
    .filter((r) => r.protocol === PROTO && (!r.dst.includes('/') || r.dst.endsWith('/32')))
    .map((r) => `${r.dst.replace(/\/32$/, '')}/32 via ${r.gateway ?? '?'} dev ${r.dev ?? '?'}`)
    .sort();
}

t.test('a lease gains a borrowed /32: every other node routes it to that node, and drops it when the lease does', async (t) => {
  const lab = await freshLab(t, { name: 'bor1', nodes: 3, podsPerNode: 0 });
  const [n1, n2, n3] = lab.nodes as [LabNode, LabNode, LabNode];
  // An address of n1's subnet, now held by n2.
  const borrowed = `${n1.subnet!.replace(/\.0\/24$/, '.200')}/32`;
  const key = `${PREFIX}/subnets/${n2.subnet!.replace('/', '-')}`;
  const value = JSON.parse((await lab.etcdGet(key))!) as Record<string, unknown>;
  const all = async () => Promise.all(lab.nodes.map((n) => borrowedRoutes(lab, n)));
  const want = [[`${borrowed} via ${n2.underlayIP} dev eth0`], [], [`${borrowed} via ${n2.underlayIP} dev eth0`]];

  await lab.etcdPut(key, JSON.stringify({ ...value, BorrowedIPs: [borrowed] }), { keepLease: true });
  const routed = await waitUntil(async () => JSON.stringify(await all()) === JSON.stringify(want), { timeoutMs: CONVERGE_MS, intervalMs: 100 });
  t.same(await all(), want, `${n1.name} (the lender) and ${n3.name} route ${borrowed} via ${n2.name}; ${n2.name} has no route to itself`);
  t.comment(`lease written to routes on both peers: ${routed.ms} ms`);

  await lab.etcdPut(key, JSON.stringify(value), { keepLease: true });
  const dropped = await waitUntil(async () => (await all()).every((r) => r.length === 0), { timeoutMs: CONVERGE_MS, intervalMs: 100 });
  t.same(await all(), [[], [], []], 'the route goes when the lease drops the address');
  t.comment(`lease rewritten to routes gone: ${dropped.ms} ms`);
});
