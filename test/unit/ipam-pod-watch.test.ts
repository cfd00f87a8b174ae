// IPAM's pod watch against the stand-in API server: this node's pods, the
// live holder of an address, a fresh get of one pod, and the calls it makes.
import { pino } from 'pino';
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { IP } from '../../src/core/cidr.js';
import { KubeApi } from '../../src/subnet/kube/api.js';
import { IpamPodWatch } from '../../src/subnet/kube/ipam-pod-watch.js';
import { FakeApiServer } from '../fixtures/kube/apiserver.js';
import { kubeConfigFor } from '../fixtures/kube/kubeconfig.js';

async function until(probe: () => boolean, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

t.test('this node\'s pods, the live holder of an address, a fresh get; list, watch and get only', async (t) => {
  const server = await FakeApiServer.start();
  const stop = new AbortController();
  const watch = new IpamPodWatch({ api: new KubeApi(kubeConfigFor(server.url)), nodeName: 'ia-n1', logger: pino({ level: 'silent' }), watchTimeoutSeconds: 60 });
  const running = watch.run(stop.signal);
  t.teardown(async () => {
    stop.abort();
    await running;
    await server.close();
  });
  const before = { pods: watch.nodePods(), listed: watch.listed() };
  server.upsertPod({ namespace: 'app', name: 'db-0', nodeName: 'ia-n1', ips: ['10.244.1.17'], annotations: { 'weft.io/ip': '10.244.1.17' } });
  server.upsertPod({ namespace: 'app', name: 'web-0', nodeName: 'ia-n2', ips: ['10.244.2.5'] });
  server.upsertPod({ namespace: 'app', name: 'job-0', nodeName: 'ia-n2', ips: ['10.244.2.6'], phase: 'Succeeded' });
  await until(() => (watch.nodePods()?.length ?? 0) === 1 && watch.holderOf(IP.parse('10.244.2.5'), { namespace: 'x', name: 'y' }) !== undefined);
  server.deletePod('app', 'web-0');
  await until(() => watch.holderOf(IP.parse('10.244.2.5'), { namespace: 'x', name: 'y' }) === undefined);
  const got = await watch.getPod('app', 'db-0');
  t.same(
    {
      before,
      here: watch.nodePods()?.map((p) => `${p.namespace}/${p.name}`),
      holder: watch.holderOf(IP.parse('10.244.1.17'), { namespace: 'app', name: 'other' })?.name,
      self: watch.holderOf(IP.parse('10.244.1.17'), { namespace: 'app', name: 'db-0' }),
      finished: watch.holderOf(IP.parse('10.244.2.6'), { namespace: 'x', name: 'y' }),
      deleted: watch.holderOf(IP.parse('10.244.2.5'), { namespace: 'x', name: 'y' }),
      annotation: got?.metadata?.annotations?.['weft.io/ip'],
      missing: await watch.getPod('app', 'nope'),
      calls: [...new Set(server.calls.map((c) => `${c.verb} ${c.resource}`))].sort(),
      unexpected: server.unexpected,
    },
    {
      before: { pods: undefined, listed: false },
      here: ['app/db-0'],
      holder: 'db-0',
      self: undefined,
      finished: undefined,
      deleted: undefined,
      annotation: '10.244.1.17',
      missing: undefined,
      calls: ['get pods', 'list pods', 'watch pods'],
      unexpected: [],
    },
  );
});
