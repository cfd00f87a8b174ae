// bgp through the agent: a route BIRD put into the kernel and someone deleted
// by hand comes back through kernel events (the agent asks BIRD for a kernel
// scan), not at BIRD's next periodic scan; a foreign route that replaced it is
// left alone. Restore times come from `ip monitor route` and are reported,
// never asserted. Needs root and a build. Lab bgx2 (namespaces wl-bgx2-*).
import t from 'tap';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lab, LabNode } from '../../src/lab/lab.js';
import { freshLab, routesOf, waitUntil, type KernelRoute } from './support/lab-fixture.js';
import { startRouteMonitor } from './support/watched-process.js';

if (process.getuid?.() !== 0) {
  t.fail('the bgp restore test needs root (network namespaces); run it as root');
  process.exit(1);
}

async function routeTo(lab: Lab, node: LabNode, dst: string): Promise<KernelRoute | undefined> {
  return (await routesOf(lab, node, { dst }))[0];
}

t.test('a BIRD route deleted by hand is restored by the event path; a foreign replacement is left alone', async (t) => {
  const lab = await freshLab(t, { name: 'bgx2', nodes: 2, podsPerNode: 1, backend: 'bgp' });
  const [n1, n2] = lab.nodes as [LabNode, LabNode];
  const dst = n2.subnet!;
  const learned = await waitUntil(async () => (await routeTo(lab, n1, dst))?.protocol === 'bird', { timeoutMs: 30_000 });
  t.ok(learned.ok, `${n1.name} has ${dst} from BIRD`);
  const monitor = await startRouteMonitor(n1.ns);
  t.teardown(() => monitor.stop());
  const escaped = dst.replace(/\./g, '\\.');

  const restoreTimes: string[] = [];
  for (let i = 0; i < 3; i++) {
    const since = performance.now();
    await lab.exec(n1, ['ip', 'route', 'del', dst, 'proto', 'bird']);
    const back = await waitUntil(async () => (await routeTo(lab, n1, dst))?.protocol === 'bird', { timeoutMs: 15_000, intervalMs: 10 });
    t.ok(back.ok, `deletion ${i + 1}: ${dst} is back in ${n1.name}'s kernel, proto bird`);
    const seen = await waitUntil(() => {
      const deleted = monitor.find(new RegExp(`^Deleted ${escaped} .*proto bird`), since);
      const added = deleted && monitor.find(new RegExp(`^${escaped} .*proto bird`), deleted.at);
      return deleted && added ? added.at - deleted.at : undefined;
    }, { timeoutMs: 5000 });
    restoreTimes.push(seen.value !== undefined ? `${seen.value.toFixed(1)} ms` : `~${back.ms} ms (polled)`);
  }
  t.comment(`bgp route deleted by hand -> back (ip monitor): ${restoreTimes.join(', ')} (BIRD's own kernel scan: every 60 s, its default)`);
  const matrix = await lab.pingMatrix();
  t.ok(matrix.ok, 'pods reach each other after the restores');

  // An operator points the prefix elsewhere with a route of their own: BIRD's does not fight back.
  const replacedAt = performance.now();
  await lab.exec(n1, ['ip', 'route', 'replace', dst, 'via', n2.underlayIP, 'dev', 'eth0', 'proto', 'static', 'metric', '32']);
  await sleep(2000);
  t.equal((await routeTo(lab, n1, dst))?.protocol, 'static', "the operator's replacement stays for 2 s");
  const changes = monitor.filter(new RegExp(`^(Deleted )?${escaped} `), replacedAt).map((l) => l.line.trim());
  t.equal(changes.length, 1, `one kernel change for ${dst} in those 2 s, the replacement itself (${changes.join(' | ')})`);

  // A delete-then-add by hand (not `replace`) ends with the foreign route in place too.
  await lab.exec(n1, ['ip', 'route', 'del', dst, 'proto', 'static']);
  await lab.exec(n1, ['ip', 'route', 'add', dst, 'via', n2.underlayIP, 'dev', 'eth0', 'proto', 'static', 'metric', '32']);
  await sleep(1000);
  t.equal((await routeTo(lab, n1, dst))?.protocol, 'static', "a foreign route deleted and added again by hand stays the operator's");

  // The foreign route goes: BIRD's takes its place again, through the same event path.
  await lab.exec(n1, ['ip', 'route', 'del', dst, 'proto', 'static']);
  const returned = await waitUntil(async () => (await routeTo(lab, n1, dst))?.protocol === 'bird', { timeoutMs: 15_000, intervalMs: 10 });
  t.ok(returned.ok, "once the operator's route is removed, BIRD's is back");
  t.comment(`foreign route removed -> BIRD's back in ~${returned.ms} ms (polled)`);
});
