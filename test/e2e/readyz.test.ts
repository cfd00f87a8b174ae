// /readyz tells the truth: while something outside weft holds the destination
// of one of weft's routes (a route weft must not replace), the agent is not
// ready and says which route and why; /healthz stays live; once the foreign
// route is gone, weft installs its own and is ready again.
import t from 'tap';
import type { LabNode } from '../../src/lab/lab.js';
import { WEFT_ROUTE_PROTO } from '../../src/dataplane/state.js';
import { freshLab, routesOf, waitUntil } from './support/lab-fixture.js';

interface Readyz { ready: boolean; failing: { part: string; reason: string }[] }

t.test('a foreign route on a weft destination makes /readyz not ready, naming it', async (t) => {
  const lab = await freshLab(t, { name: 'rz1', nodes: 2, podsPerNode: 1 });
  const [n1, n2] = lab.nodes as [LabNode, LabNode];
  const dst = n2.subnet!;

  const before = await lab.agentHttp(n1, '/readyz');
  t.equal(before.status, 200, '/readyz is 200 on a healthy node');
  t.same(JSON.parse(before.body), { ready: true, failing: [] }, 'the body says ready, nothing failing');

  // Atomically swap weft's route for one weft does not own: nothing is ever missing in between.
  await lab.exec(n1, ['ip', 'route', 'replace', 'blackhole', dst, 'proto', 'static']);
  const notReady = await waitUntil(async () => {
    const r = await lab.agentHttp(n1, '/readyz');
    return r.status === 503 ? (JSON.parse(r.body) as Readyz) : undefined;
  }, { timeoutMs: 30_000, intervalMs: 100 });
  t.ok(notReady.ok, '/readyz turns 503 while the foreign route holds the destination');
  t.comment(`foreign route to not-ready: ${notReady.ms} ms`);
  const failing = notReady.value?.failing ?? [];
  t.ok(failing.some((f) => f.part === 'routes' && f.reason.includes(dst) && /does not own/.test(f.reason)), `the body names the routes part and ${dst}: ${JSON.stringify(failing)}`);
  t.equal((await lab.agentHttp(n1, '/healthz')).status, 200, '/healthz stays live: the agent is not broken, the node is not ready');
  t.match((await lab.agentHttp(n1, '/metrics')).body, /^weft_dataplane_conflicts 1$/m, '/metrics counts the conflict');
  const held = (await routesOf(lab, n1)).find((r) => r.dst === dst);
  t.equal(held?.protocol, 'static', 'weft left the foreign route alone');

  await lab.exec(n1, ['ip', 'route', 'del', dst, 'proto', 'static']);
  const ready = await waitUntil(async () => (await lab.agentHttp(n1, '/readyz')).status === 200, { timeoutMs: 30_000, intervalMs: 100 });
  t.ok(ready.ok, '/readyz is 200 again once the foreign route is gone');
  t.comment(`foreign route removed to ready: ${ready.ms} ms`);
  const restored = (await routesOf(lab, n1)).find((r) => r.dst === dst);
  t.equal(restored?.protocol, String(WEFT_ROUTE_PROTO), "weft's own route is back");
});
