// `weft bench scale` at a tiny size: the real thing (etcd, simulated agents in
// worker processes, a real namespace programmed by the reconciler), checked
// for behaviour, never for time. Needs root and etcd-server.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { removeEtcdLeftovers } from '../../src/lab/etcd.js';
import { removeNodeNamespace } from '../../src/bench/scale/reconcile.js';
import { runScale, SCALE_ETCD_TAG, type ScaleResult } from '../../src/bench/scale/run.js';

const NS = 'wl-sct-node';
const NODES = 8;
const JOINS = 5;

const namespaces = (): string[] => spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.split(' ')[0] ?? '');
const children = (): number => spawnSync('pgrep', ['-P', String(process.pid)], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean).length;
/** etcd dirs this test process made (a benchmark run elsewhere on the machine has its own). */
const ownEtcdDirs = (): string[] =>
  readdirSync(tmpdir()).filter((d) => {
    if (!d.startsWith(SCALE_ETCD_TAG)) return false;
    try {
      return (JSON.parse(readFileSync(join(tmpdir(), d, 'owner.json'), 'utf8')) as { owner: number }).owner === process.pid;
    } catch {
      return false;
    }
  });

if (process.getuid?.() !== 0) {
  t.fail('this test needs root (network namespaces); run it as root');
} else {
  const cleanup = async (): Promise<void> => {
    await removeNodeNamespace(NS);
    await removeEtcdLeftovers(SCALE_ETCD_TAG);
  };
  await cleanup();
  t.teardown(cleanup);

  let result: ScaleResult | undefined;
  t.before(async () => {
    result = await runScale({ nodes: NODES, joins: JOINS, netns: NS, settleMs: 0, idleSeconds: 1, reps: 1, log: (line) => t.comment(line) });
  });

  t.test('every agent saw every join, with no re-list or per-key read', async (t) => {
    const r = result!;
    t.equal(r.visibility.joinsSeenByAll, JOINS, `each of the ${JOINS} joins reached all ${NODES} agents' desired state`);
    t.equal(r.etcd.relists, 0, 'no watch re-listed');
    // From the agents' own request counters: no list, and a key read only per renewal try.
    const s = r.etcd.steadyRequests;
    t.ok(s.lists === 0 && s.ranges <= s.keepalives + r.etcd.renewalFailures, `no list and no read beyond the renewals' own (${JSON.stringify(s)}; failed renewals ${r.etcd.renewalFailures})`);
    t.equal(r.etcd.watchers, NODES + JOINS, 'one watcher per agent');
  });

  t.test('the reconciler programmed every peer in few processes', async (t) => {
    const r = result!;
    const figures = r.reconciler.map((f) => ({ backend: f.backend, routes: f.programmedRoutes, writes: Math.max(f.fromEmpty.writes, f.add.writes, f.remove.writes) }));
    t.same(figures.map((f) => [f.backend, f.routes]), [['host-gw', NODES - 1], ['vxlan', NODES - 1]], 'a route per peer on both backends');
    t.ok(figures.every((f) => f.writes <= 3), `at most 3 write processes per pass (${figures.map((f) => `${f.backend} ${f.writes}`).join(', ')})`);
  });

  t.test('nothing left behind', async (t) => {
    const left = {
      namespaces: namespaces().filter((n) => n === NS),
      etcdDirs: ownEtcdDirs(),
      children: children(),
    };
    t.same(left, { namespaces: [], etcdDirs: [], children: 0 }, 'no namespace, etcd dir or child process');
  });
}
