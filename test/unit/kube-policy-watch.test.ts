// PolicyWorldWatch with the real @kubernetes/client-node against the
// in-process stand-in API server (test/fixtures/kube/apiserver.ts): the
// world after the first lists, each kind of change, what must not count as
// one, watch resume, 410 Gone and a ClusterRole without the new rules.
// "Nothing else was emitted" is shown by a sentinel change: the next world
// after the quiet part must be the sentinel's, never by waiting a while.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import type { PolicyWorld } from '../../src/policy/types.js';
import { KUBE_API_CALLS } from '../../src/subnet/kube/api.js';
import { PolicyWorldWatch } from '../../src/subnet/kube/policy-watch.js';
import { FakeApiServer, type PodSpec } from '../fixtures/kube/apiserver.js';
import { ApiServerProcess } from '../fixtures/kube/apiserver-process.js';
import { kubeConfigFor } from '../fixtures/kube/kubeconfig.js';

async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

interface Running {
  watch: PolicyWorldWatch;
  worlds: PolicyWorld[];
  last(): PolicyWorld | undefined;
  /** The first world after index `after` that `ok` accepts. */
  next(what: string, after: number, ok: (w: PolicyWorld) => boolean): Promise<PolicyWorld>;
}

/** A started watch on `server`, stopped (and awaited) at the end of `t`. */
function startWatch(t: Test, server: { url: string }, opts: { debounceMs?: number } = {}): Running {
  const stop = new AbortController();
  const watch = new PolicyWorldWatch({ kubeConfig: kubeConfigFor(server.url), logger: pino({ level: 'silent' }), watchTimeoutSeconds: 60, ...opts });
  const worlds: PolicyWorld[] = [];
  const running = watch.run((w) => void worlds.push(w), stop.signal);
  t.teardown(async () => {
    stop.abort();
    await running;
  });
  return {
    watch,
    worlds,
    last: () => worlds[worlds.length - 1],
    next: (what, after, ok) => waitFor(what, () => worlds.slice(after).find(ok)),
  };
}

async function fakeServer(t: Test): Promise<FakeApiServer> {
  const server = await FakeApiServer.start();
  t.teardown(() => server.close());
  return server;
}

const pod = (name: string, ip: string, labels: Record<string, string> = { app: 'web' }, namespace = 'ka-a'): PodSpec => ({
  namespace,
  name,
  labels,
  nodeName: 'ka-n1',
  ips: [ip],
  ports: [{ name: 'http', containerPort: 8080 }],
});

const policy = (name: string, namespace = 'ka-a'): Record<string, any> => ({
  metadata: { namespace, name },
  spec: { podSelector: { matchLabels: { app: 'web' } }, policyTypes: ['Ingress'], ingress: [{ ports: [{ port: 'http' }] }] },
});

const podNames = (w: PolicyWorld | undefined): string[] => (w?.pods ?? []).map((p) => `${p.namespace}/${p.name}`);
const policyNames = (w: PolicyWorld | undefined): string[] => (w?.policies ?? []).map((p) => `${p.namespace}/${p.name}`);
const hasPod = (name: string) => (w: PolicyWorld) => podNames(w).includes(name);
const lacksPod = (name: string) => (w: PolicyWorld) => !podNames(w).includes(name);

/** Calls made, as "group|resource|verb". */
const callsOf = (server: FakeApiServer, verb?: string): string[] =>
  server.calls.filter((c) => !verb || c.verb === verb).map((c) => `${c.apiGroup}|${c.resource}|${c.verb}`);

t.test('before the first lists: no world, and health says so', async (t) => {
  const server = await fakeServer(t);
  const watch = new PolicyWorldWatch({ kubeConfig: kubeConfigFor(server.url), logger: pino({ level: 'silent' }) });
  t.same([watch.world(), watch.health()], [undefined, 'NetworkPolicy watch: not synced yet, waiting for the first list of pods, namespaces, networkpolicies from the API server']);
});

t.test('the first world: once, with all three, at the newest resourceVersion', async (t) => {
  const server = await fakeServer(t);
  server.upsertNamespace('ka-a', { team: 'a' });
  server.upsertNamespace('ka-b');
  server.addPods([pod('web-1', '10.244.1.5'), pod('web-2', '10.244.1.6'), pod('db-1', '10.244.2.5', { app: 'db' }, 'ka-b')]);
  server.upsertPolicy(policy('allow-http'));
  const rv = server.resourceVersion;
  const r = startWatch(t, server);
  const first = await r.next('the first world', 0, () => true);
  t.same(
    {
      pods: podNames(first),
      namespaces: first.namespaces.map((n) => [n.name, n.labels.team]),
      policies: policyNames(first),
      resourceVersion: first.resourceVersion,
      health: r.watch.health(),
      worldIsTheSame: r.watch.world() === first,
    },
    {
      pods: ['ka-a/web-1', 'ka-a/web-2', 'ka-b/db-1'],
      namespaces: [['ka-a', 'a'], ['ka-b', undefined]],
      policies: ['ka-a/allow-http'],
      resourceVersion: rv,
      health: undefined,
      worldIsTheSame: true,
    },
  );
  t.same(first.pods[0], { namespace: 'ka-a', name: 'web-1', labels: { app: 'web' }, nodeName: 'ka-n1', ips: ['10.244.1.5'], ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }, 'a pod as parsed info');
  // Sentinel: the next world must be this change's, so nothing came in between.
  server.upsertNamespace('ka-c');
  const second = await r.next('the sentinel namespace', 1, (w) => w.namespaces.some((n) => n.name === 'ka-c'));
  t.equal(r.worlds.indexOf(second), 1, 'onChange was called once for the initial sync');
});

t.test('an empty cluster still gives a first world', async (t) => {
  const server = await fakeServer(t);
  const r = startWatch(t, server);
  const first = await r.next('the first world', 0, () => true);
  t.same([first.pods, first.namespaces, first.policies], [[], [], []]);
});

t.test('each kind of change reaches onChange', async (t) => {
  const server = await fakeServer(t);
  server.upsertNamespace('ka-a', { team: 'a' });
  server.upsertPod(pod('web-1', '10.244.1.5'));
  const r = startWatch(t, server);
  await r.next('the first world', 0, () => true);
  const seen: string[] = [];
  const step = async (what: string, change: () => string, ok: (w: PolicyWorld) => boolean): Promise<void> => {
    const at = r.worlds.length;
    const rv = change();
    const w = await r.next(what, at, ok);
    seen.push(`${what}${w.resourceVersion === rv ? '' : ` (resourceVersion ${w.resourceVersion}, want ${rv})`}`);
  };
  await step('pod added', () => server.upsertPod(pod('web-2', '10.244.1.6')), hasPod('ka-a/web-2'));
  await step('pod relabelled', () => server.upsertPod(pod('web-2', '10.244.1.6', { app: 'api' })), (w) => w.pods.some((p) => p.name === 'web-2' && p.labels.app === 'api'));
  await step('pod re-addressed', () => server.upsertPod(pod('web-2', '10.244.1.7', { app: 'api' })), (w) => w.pods.some((p) => p.name === 'web-2' && p.ips[0] === '10.244.1.7'));
  await step('pod deleted', () => server.deletePod('ka-a', 'web-2'), lacksPod('ka-a/web-2'));
  await step('pod finished (Failed)', () => server.upsertPod({ ...pod('web-1', '10.244.1.5'), phase: 'Failed' }), lacksPod('ka-a/web-1'));
  await step('namespace relabelled', () => server.upsertNamespace('ka-a', { team: 'b' }), (w) => w.namespaces.some((n) => n.name === 'ka-a' && n.labels.team === 'b'));
  await step('namespace deleted', () => server.deleteNamespace('ka-a'), (w) => w.namespaces.length === 0);
  await step('policy added', () => server.upsertPolicy(policy('allow-http')), (w) => policyNames(w).includes('ka-a/allow-http'));
  await step('policy spec changed', () => server.upsertPolicy({ ...policy('allow-http'), spec: { podSelector: {} } }), (w) => JSON.stringify(w.policies[0]?.spec) === '{"podSelector":{}}');
  await step('policy deleted', () => server.deletePolicy('ka-a', 'allow-http'), (w) => w.policies.length === 0);
  t.same(seen, [
    'pod added',
    'pod relabelled',
    'pod re-addressed',
    'pod deleted',
    'pod finished (Failed)',
    'namespace relabelled',
    'namespace deleted',
    'policy added',
    'policy spec changed',
    'policy deleted',
  ], 'each change gave a world with it, at its resourceVersion');
});

t.test('what policy does not read changes nothing: status updates, bookmarks, left-out pods, policy metadata', async (t) => {
  const server = await fakeServer(t);
  server.upsertNamespace('ka-a');
  server.upsertPod(pod('web-1', '10.244.1.5'));
  server.upsertPolicy(policy('allow-http'));
  const r = startWatch(t, server);
  await r.next('the first world', 0, () => true);
  const events = r.watch.counters.events;
  server.touchPodStatus('ka-a', 'web-1');
  server.bookmark();
  server.upsertPod({ ...pod('host-1', '192.0.2.10'), hostNetwork: true });
  server.upsertPod(pod('pending-1', '10.244.1.9'));
  server.deletePod('ka-a', 'pending-1'); // added then deleted: shows up, so it is not quiet; see the sentinel below
  server.upsertPolicy({ ...policy('allow-http'), metadata: { namespace: 'ka-a', name: 'allow-http', annotations: { note: 'x' } } });
  await waitFor('the quiet events to arrive', () => r.watch.counters.events >= events + 8);
  const quiet = r.worlds.length;
  server.upsertNamespace('ka-sentinel');
  const w = await r.next('the sentinel', quiet, (w) => w.namespaces.some((n) => n.name === 'ka-sentinel'));
  t.same(
    { sentinelIsNext: r.worlds.indexOf(w) === quiet, pods: podNames(w) },
    { sentinelIsNext: true, pods: ['ka-a/web-1'] },
    'the status update, the bookmarks, the host-network pod and the annotation made no world of their own; the sentinel did',
  );
});

t.test('a burst of changes makes one onChange call', async (t) => {
  const server = await fakeServer(t);
  const r = startWatch(t, server, { debounceMs: 500 });
  await r.next('the first world', 0, () => true);
  server.addPods(Array.from({ length: 50 }, (_, i) => pod(`web-${i}`, `10.244.3.${i + 1}`)));
  const w = await r.next('all 50 pods', 1, (w) => w.pods.length === 50);
  t.equal(r.worlds.indexOf(w), 1, 'the 50 pod events gave one world');
});

t.test('a dropped watch resumes from its resourceVersion, without a list', async (t) => {
  const server = await fakeServer(t);
  server.upsertNamespace('ka-a');
  server.upsertPod(pod('web-1', '10.244.1.5'));
  const r = startWatch(t, server);
  await r.next('the first world', 0, () => true);
  await waitFor('three watches', () => server.openWatches === 3);
  const lists = callsOf(server, 'list').length;
  const at = r.worlds.length;
  server.dropWatches();
  // Made while no watch is open: only a resumed watch's history can bring them.
  server.upsertPod(pod('web-2', '10.244.1.6'));
  server.upsertPolicy(policy('allow-http'));
  server.upsertNamespace('ka-b');
  const w = await r.next('the changes made while disconnected', at, (w) => hasPod('ka-a/web-2')(w) && w.policies.length === 1 && w.namespaces.length === 2);
  t.same({ lists: callsOf(server, 'list').length - lists, resourceVersion: w.resourceVersion }, { lists: 0, resourceVersion: server.resourceVersion }, 'no list again; the world is at the newest resourceVersion');
});

t.test('410 Gone after compaction: every resource is listed again and the world is right', async (t) => {
  for (const mode of ['event', 'http'] as const) {
    await t.test(`expired as ${mode === 'event' ? 'an ERROR event' : 'HTTP 410'}`, async (t) => {
      const server = await fakeServer(t);
      server.expiredAs = mode;
      server.upsertNamespace('ka-a');
      server.upsertNamespace('ka-gone');
      server.addPods([pod('web-1', '10.244.1.5'), pod('web-2', '10.244.1.6')]);
      server.addPolicies([policy('keep'), policy('gone')]);
      const r = startWatch(t, server);
      await r.next('the first world', 0, () => true);
      await waitFor('three watches', () => server.openWatches === 3);
      const lists = callsOf(server, 'list').length;
      const at = r.worlds.length;
      server.dropWatches();
      // Deleted and added in the gap, then the history forgotten: only a new list can tell.
      server.deletePod('ka-a', 'web-2');
      server.upsertPod(pod('web-3', '10.244.1.7'));
      server.deletePolicy('ka-a', 'gone');
      server.deleteNamespace('ka-gone');
      server.compact();
      const w = await r.next('the world after the gap', at, (w) => hasPod('ka-a/web-3')(w) && lacksPod('ka-a/web-2')(w) && w.policies.length === 1 && w.namespaces.length === 1);
      t.same(
        { pods: podNames(w), policies: policyNames(w), namespaces: w.namespaces.map((n) => n.name), relists: callsOf(server, 'list').length - lists, resourceVersion: w.resourceVersion },
        { pods: ['ka-a/web-1', 'ka-a/web-3'], policies: ['ka-a/keep'], namespaces: ['ka-a'], relists: 3, resourceVersion: server.resourceVersion },
      );
    });
  }
});

t.test('a ClusterRole without the new rules: health says why and what to do', async (t) => {
  const server = await fakeServer(t);
  server.forbidden.add('networkpolicies');
  const r = startWatch(t, server);
  const health = await waitFor('health to report the 403', () => r.watch.health()?.includes('403') && r.watch.health());
  t.same(
    { world: r.watch.world(), lines: health.split('\n').length },
    { world: undefined, lines: 1 },
    'no world while a resource cannot be listed; one line',
  );
  t.match(health, /^NetworkPolicy watch: list networkpolicies: HTTP 403 .*ClusterRole weft lacks the rules to list and watch pods, namespaces and networkpolicies; apply deploy\/ again$/);
  server.forbidden.delete('networkpolicies');
  await r.next('the first world once allowed', 0, () => true);
  t.equal(r.watch.health(), undefined, 'healthy once the rules are there');
});

t.test('an API server that fails watches: health names it, then recovers', async (t) => {
  const server = await fakeServer(t);
  server.failingWatches = 3;
  const r = startWatch(t, server);
  const health = await waitFor('health to report the failing watch', () => r.watch.health()?.includes('ERROR') && r.watch.health());
  t.match(health, /^NetworkPolicy watch: watch (pods|namespaces|networkpolicies): ERROR event 500 \(etcd leader changed\)$/);
  await waitFor('the watches to come back', () => server.openWatches === 3 && r.watch.health() === undefined);
  t.equal(r.watch.health(), undefined, 'healthy again');
});

t.test('objects no validating API server would keep arrive parsed as specified', async (t) => {
  const server = await fakeServer(t);
  server.upsertNamespace('ka-a');
  server.upsertRaw('namespaces', { metadata: { name: 'ka-odd', labels: { team: 5, env: 'x' } } });
  server.upsertRaw('pods', { metadata: { namespace: 'ka-a', name: 'odd', labels: { app: 'web', n: 1 } }, spec: { nodeName: 'ka-n1', containers: [{ ports: [{ containerPort: 'x' }, { containerPort: 80 }] }] }, status: { podIPs: [{ ip: '10.1' }, { ip: '10.244.1.9' }] } });
  server.upsertRaw('pods', { metadata: { namespace: 'ka-a', name: 'no-ip' }, spec: {}, status: { phase: 'Running' } });
  server.upsertRaw('pods', { metadata: { namespace: 'ka-a', name: 'bad-ip' }, spec: {}, status: { podIP: '300.1.1.1' } });
  server.upsertRaw('networkpolicies', { metadata: { namespace: 'ka-a', name: 'odd' }, spec: 'not a spec' });
  server.upsertRaw('networkpolicies', { metadata: { namespace: 3, name: 'no-namespace' }, spec: {} });
  const r = startWatch(t, server);
  const first = await r.next('the first world', 0, () => true);
  t.same(
    { pods: first.pods, namespaces: first.namespaces, policies: first.policies },
    {
      pods: [{ namespace: 'ka-a', name: 'odd', labels: { app: 'web' }, nodeName: 'ka-n1', ips: ['10.244.1.9'], ports: [{ containerPort: 80, protocol: 'TCP' }] }],
      namespaces: [{ name: 'ka-a', labels: { 'kubernetes.io/metadata.name': 'ka-a' } }, { name: 'ka-odd', labels: { env: 'x' } }],
      policies: [{ namespace: 'ka-a', name: 'odd', spec: 'not a spec' }],
    },
  );
});

t.test('1000 pods and 200 policies', async (t) => {
  const server = await fakeServer(t);
  for (let n = 0; n < 10; n++) server.upsertNamespace(`ka-${n}`, { n: String(n) });
  server.addPods(Array.from({ length: 1000 }, (_, i) => pod(`p-${i}`, `10.244.${i >> 7}.${(i & 127) + 1}`, { app: `a${i % 20}` }, `ka-${i % 10}`)));
  server.addPolicies(Array.from({ length: 200 }, (_, i) => policy(`pol-${i}`, `ka-${i % 10}`)));
  const r = startWatch(t, server);
  const first = await r.next('the first world', 0, () => true);
  server.addPods(Array.from({ length: 1000 }, (_, i) => pod(`q-${i}`, `10.245.${i >> 7}.${(i & 127) + 1}`, { app: `a${i % 20}` }, `ka-${i % 10}`)));
  const grown = await r.next('the next 1000 pods', 1, (w) => w.pods.length === 2000);
  t.same([first.pods.length, first.policies.length, first.namespaces.length, grown.resourceVersion], [1000, 200, 10, server.resourceVersion]);
});

t.test('the calls made are exactly the pod, namespace and networkpolicy list and watch rows of KUBE_API_CALLS', async (t) => {
  const server = await fakeServer(t);
  const r = startWatch(t, server);
  await r.next('the first world', 0, () => true);
  await waitFor('three watches', () => server.openWatches === 3);
  // IPAM's get of one pod is not the watch's.
  const table = KUBE_API_CALLS.filter((c) => !c.resource.startsWith('nodes') && c.verb !== 'get').map((c) => `${c.apiGroup}|${c.resource}|${c.verb}`);
  t.same({ made: [...new Set(callsOf(server))].sort(), unexpected: server.unexpected }, { made: table.sort(), unexpected: [] });
});

t.test('the API server as a process, driven over IPC: bulk adds, changes, compaction', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ka-apiserver-'));
  const server = await ApiServerProcess.start({ host: '127.0.0.1', port: 0, logFile: join(dir, 'apiserver.log') });
  t.teardown(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const rvs: string[] = [];
  rvs.push(await server.upsertNamespace('ka-a', { team: 'a' }));
  rvs.push(await server.addPods(Array.from({ length: 1000 }, (_, i) => pod(`p-${i}`, `10.244.${i >> 7}.${(i & 127) + 1}`))));
  rvs.push(await server.addPolicies(Array.from({ length: 200 }, (_, i) => policy(`pol-${i}`))));
  const r = startWatch(t, server);
  const first = await r.next('the first world', 0, () => true);
  rvs.push(await server.upsertPod(pod('extra', '10.244.9.1')));
  await r.next('the extra pod', 1, hasPod('ka-a/extra'));
  // Watchers kept away while things change and the history is compacted: they must list again.
  await server.holdWatches(true);
  await server.dropWatches();
  rvs.push(await server.deletePod('ka-a', 'p-0'));
  rvs.push(await server.upsertPolicy(policy('new')));
  rvs.push(await server.deletePolicy('ka-a', 'pol-0'));
  rvs.push(await server.deleteNamespace('ka-a'));
  await server.compact();
  await server.holdWatches(false);
  const after = await r.next('the world after compaction', 2, (w) => lacksPod('ka-a/p-0')(w) && w.namespaces.length === 0 && policyNames(w).includes('ka-a/new'));
  const lists = (await server.calls()).filter((c) => c.verb === 'list').length;
  t.same(
    {
      first: [first.pods.length, first.policies.length, first.resourceVersion],
      after: [after.pods.length, after.policies.length, after.resourceVersion],
      rvsIncrease: rvs.every((rv, i) => i === 0 || Number(rv) > Number(rvs[i - 1])),
      lists,
    },
    { first: [1000, 200, rvs[2]], after: [1000, 200, rvs[rvs.length - 1]], rvsIncrease: true, lists: 6 },
    'every op answered with the new resourceVersion; compaction made each resource list again',
  );
});
