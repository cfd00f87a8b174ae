// Pinned addresses end to end in kube labs (the stand-in API server), pods
// made as kubelet makes them (the Pod object, then the weft CNI plugin with
// K8S_POD_* in CNI_ARGS, then the pod's status): a pinned pod recreated on
// its node keeps its IP and MAC; moved to another node it keeps its IP, and
// every other pod on every node reaches it there, on each backend (labs in
// parallel, udp included; the time from the new pod's ADD to reachability is reported, not
// asserted); a second pod asking for a held address fails naming it and its
// holder; deleted there, the address goes home; 200 stale allocations go in
// one agent reconcile.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { BackendType } from '../../src/config/netconf.js';
import { IP } from '../../src/core/cidr.js';
import { derivedMac } from '../../src/ipam/annotations.js';
import { labIpamDir } from '../../src/lab/cni.js';
import type { LabNode } from '../../src/lab/lab.js';
import { pingOnce } from '../../src/lab/ping.js';
import { readState, storePaths, updateState } from '../../src/ipam/store.js';
import type { Allocation } from '../../src/ipam/state.js';
import { startKubeLab, type KubeLab } from './support/kube-lab.js';
import { CniAddError, deletePod, runPod, type KubeletPod } from './support/kubelet.js';
import { waitUntil } from './support/lab-fixture.js';

/** Labs in parallel, one per backend. */
const BACKENDS: { backend: BackendType; name: string }[] = [
  { backend: 'host-gw', name: 'ia1' },
  { backend: 'vxlan', name: 'ia2' },
  { backend: 'bgp', name: 'ia3' },
  { backend: 'udp', name: 'ia4' },
];
/** Generous: several labs' agents on a loaded 2-core machine. */
const REACH_MS = 60_000;
const NS = 'app';
/** The lab's weft CNI conf names its network "weft": the store is <ipam dir>/weft. */
const NETWORK = 'weft';
/** ia1 reclaims on a short cycle so that (d) sees one reconcile within the test; the grace still spares every live pod's allocation (each younger pod has its netns). */
const FAST_RECONCILE = ['--ipam-reconcile-interval', '2s', '--ipam-gc-grace', '60s'];

interface Moved {
  backend: BackendType;
  lab: KubeLab;
  nodes: LabNode[];
  pinned: string;
  mac: string;
  plain: KubeletPod[];
  first: KubeletPod;
  moved: KubeletPod;
  /** Each plain pod (one per node) reached the pinned pod at home, then moved. */
  reachedHome: boolean[];
  reached: boolean[];
  reachMs: number;
}

/** An address of the node's IPv4 podCIDR: `.17` of 10.244.101.0/24. */
function hostOf(kl: KubeLab, node: LabNode, last: number): string {
  const cidr = kl.podCidrsOf(node)[0]!;
  return IP.parse(cidr.split('/')[0]!).add(last).toString();
}

/** Every source pod pings `ip` until each has answered once; returns which did and how long it took. */
async function reachFromAll(sources: KubeletPod[], ip: string): Promise<{ reached: boolean[]; ms: number }> {
  const started = performance.now();
  const reached = await Promise.all(sources.map(async (p) => (await waitUntil(() => pingOnce(p.ns, ip, 1), { timeoutMs: REACH_MS, intervalMs: 100 })).ok));
  return { reached, ms: Math.round(performance.now() - started) };
}

/** One lab: plain pods on every node, a pinned pod on n1, then moved to n2 and reached from every plain pod. */
async function moveScenario(backend: BackendType, name: string): Promise<Moved> {
  const lab = await startKubeLab(t, { name, nodes: 3, backend, agentArgs: name === 'ia1' ? FAST_RECONCILE : [] });
  const nodes = lab.lab.nodes as LabNode[];
  const [n1, n2] = nodes as [LabNode, LabNode];
  const plain = await Promise.all(nodes.map((n, i) => runPod(lab, n, { namespace: NS, name: `web-${i}` })));
  const pinned = hostOf(lab, n1, 17);
  const mac = '02:42:0a:f4:65:11';
  const annotations = { 'weft.io/ip': pinned, 'weft.io/mac': mac };
  const first = await runPod(lab, n1, { namespace: NS, name: 'db-0', annotations });
  // Every pod talks to it at home first: the pod on n1 learns its MAC there, as a client would.
  const reachedHome = await Promise.all(plain.map(async (p) => (await waitUntil(() => pingOnce(p.ns, pinned, 1), { timeoutMs: REACH_MS, intervalMs: 100 })).ok));
  await deletePod(lab, first);
  const started = performance.now();
  const moved = await runPod(lab, n2, { namespace: NS, name: 'db-0', annotations });
  const reach = await reachFromAll(plain, pinned);
  return { backend, lab, nodes, pinned, mac, plain, first, moved, reachedHome, reached: reach.reached, reachMs: Math.round(performance.now() - started) };
}

t.test('pinned addresses: kept on recreation, followed to another node on every backend, refused to a second pod, leftovers reclaimed', async (t) => {
  const runs = await Promise.all(BACKENDS.map((b) => moveScenario(b.backend, b.name)));

  t.test('a pinned pod moved to another node keeps its IP and MAC, and every other pod on every node reaches it there (those on its old node knew its MAC)', async (t) => {
    t.same(
      runs.map((r) => ({ backend: r.backend, first: [r.first.ips, r.first.mac], moved: [r.moved.ips, r.moved.mac], reachedHome: r.reachedHome, reached: r.reached })),
      runs.map((r) => ({ backend: r.backend, first: [[r.pinned], r.mac], moved: [[r.pinned], r.mac], reachedHome: r.plain.map(() => true), reached: r.plain.map(() => true) })),
    );
    for (const r of runs) t.comment(`${r.backend}: the moved pod's ADD to reachable from a pod on each of ${r.nodes.length} nodes: ${r.reachMs} ms`);
  });

  const hg = runs.find((r) => r.backend === 'host-gw')!;
  const { lab } = hg;
  const [, n2, n3] = hg.nodes as [LabNode, LabNode, LabNode];

  t.test('a pinned pod deleted and recreated on the same node keeps its IP and MAC', async (t) => {
    const annotations = { 'weft.io/ip': hostOf(lab, n3, 23), 'weft.io/mac': '02:42:0a:f4:67:17' };
    const before = await runPod(lab, n3, { namespace: NS, name: 'cache-0', annotations });
    await deletePod(lab, before);
    const after = await runPod(lab, n3, { namespace: NS, name: 'cache-0', annotations });
    const plainMac = await runPod(lab, n3, { namespace: NS, name: 'queue-0', annotations: { 'weft.io/ip': hostOf(lab, n3, 24) } });
    t.same(
      { before: [before.ips, before.mac], after: [after.ips, after.mac], derived: plainMac.mac },
      { before: [[hostOf(lab, n3, 23)], '02:42:0a:f4:67:17'], after: [[hostOf(lab, n3, 23)], '02:42:0a:f4:67:17'], derived: derivedMac([IP.parse(hostOf(lab, n3, 24))]) },
    );
  });

  t.test('a second pod asking for a held address fails ADD naming the address and its holder; the first keeps answering', async (t) => {
    let error = 'ADD succeeded';
    try {
      await runPod(lab, n3, { namespace: NS, name: 'db-copy', annotations: { 'weft.io/ip': hg.pinned } });
    } catch (err) {
      error = err instanceof CniAddError ? err.message : `not a CNI error: ${String(err)}`;
    }
    const answers = await Promise.all(hg.plain.map((p) => pingOnce(p.ns, hg.pinned, 2)));
    t.same({ error: error.includes(hg.pinned) && error.includes(`${NS}/db-0`) ? 'names both' : error, answers }, { error: 'names both', answers: hg.plain.map(() => true) });
  });

  t.test('the moved pod deleted: its node stops publishing the address, and the home node lends it no more', async (t) => {
    const [n1] = hg.nodes as [LabNode];
    const home = storePaths(labIpamDir(lab.lab.nodeDir(n1)), NETWORK);
    const lentBefore = readState(home.state).borrowedOut;
    const started = performance.now();
    await deletePod(lab, hg.moved);
    const published = async () => (await lab.api.node(n2.ns))?.metadata?.annotations?.['weft.io/borrowed-ips'];
    const returned = await waitUntil(async () => (await published()) === undefined && readState(home.state).borrowedOut.length === 0, { timeoutMs: 30_000, intervalMs: 100 });
    t.same({ lentBefore, returned: returned.ok }, { lentBefore: [hg.pinned], returned: true });
    t.comment(`DEL on the borrowing node to the address free at home: ${Math.round(performance.now() - started)} ms`);
  });

  t.test('200 stale allocations (netns gone, older than the grace) are gone after one agent reconcile, and a new pod starts', async (t) => {
    const paths = storePaths(labIpamDir(lab.lab.nodeDir(n2)), NETWORK);
    const old = new Date(Date.now() - 3600_000).toISOString();
    const stale = updateState(paths, (state) => {
      const held = new Set(state.allocations.map((a) => a.address));
      const added: Allocation[] = [];
      for (let i = 30; added.length < 200; i++) {
        const address = hostOf(lab, n2, i);
        if (held.has(address)) continue;
        added.push({ address, family: 4, containerId: `crashed-${i}`, ifname: 'eth0', netns: `/var/run/netns/ia-crashed-${i}`, since: old, pinned: false });
      }
      return { state: { ...state, allocations: [...state.allocations, ...added] }, result: added.length };
    });
    const gone = await waitUntil(() => readState(paths.state).allocations.every((a) => !a.containerId.startsWith('crashed-')), { timeoutMs: 30_000, intervalMs: 100 });
    const after = readState(paths.state);
    const freed = after.lastReconcile?.freed.filter((f) => f.containerId.startsWith('crashed-')).length ?? 0;
    const next = await runPod(lab, n2, { namespace: NS, name: 'after-crash' });
    const summary = (await readFile(lab.lab.agentLogFile(n2), 'utf8')).split('\n').filter((l) => l.includes('"freed":200')).map((l) => JSON.parse(l) as { ms: number })[0];
    t.same({ stale, gone: gone.ok, freedInOnePass: freed, next: next.ips.length }, { stale: 200, gone: true, freedInOnePass: 200, next: 1 });
    t.comment(`reclaimed ${freed} stale allocations in one reconcile of ${summary?.ms ?? '?'} ms (the agent's summary line); written to gone: ${gone.ms} ms (a reconcile every 2 s)`);
  });

});
