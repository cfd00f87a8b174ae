// The Kubernetes subnet manager with the real @kubernetes/client-node against
// a local stand-in API server (test/fixtures/kube/apiserver.ts): no real
// cluster can run here. Three managers play three nodes' agents.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { IP } from '../../src/core/cidr.js';
import { KUBE_API_CALLS } from '../../src/subnet/kube/api.js';
import { KubeSubnetManager, kubeNodeName } from '../../src/subnet/kube/manager.js';
import type { Lease, LeaseAttrs, LeaseEvent } from '../../src/subnet/lease.js';
import { LeaseGoneError } from '../../src/subnet/manager.js';
import { FakeApiServer } from '../fixtures/kube/apiserver.js';
import { kubeConfigFor } from '../fixtures/kube/kubeconfig.js';

const NET_CONF = JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } });

async function waitFor(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** One node's agent, as far as the subnet manager goes: its manager and the leases it has seen. */
interface Agent {
  name: string;
  manager: KubeSubnetManager;
  leases: Map<string, Lease>;
  batches: { events: LeaseEvent[]; snapshot: boolean }[];
  logs: Record<string, any>[];
  stop: AbortController;
  watching: Promise<void>;
}


function attrs(ip: string, vni = 1): LeaseAttrs {
  return { publicIP: IP.parse(ip), backendType: 'vxlan', backendData: { VNI: vni, VtepMAC: '0e:00:00:00:00:01' } };
}

t.test('node name: NODE_NAME, else the hostname', async (t) => {
  t.equal(kubeNodeName({ NODE_NAME: 'worker-1' }, 'host'), 'worker-1');
  t.equal(kubeNodeName({ NODE_NAME: '' }, 'host'), 'host');
  t.equal(kubeNodeName({}, 'host'), 'host');
});

t.test('three agents against the API server', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wk8-kube-'));
  const netConfFile = join(dir, 'net-conf.json');
  writeFileSync(netConfFile, NET_CONF);
  const server = await FakeApiServer.start();
  const agents: Agent[] = [];
  t.teardown(async () => {
    for (const a of agents) {
      a.stop.abort();
      await a.manager.close();
    }
    await Promise.all(agents.map((a) => a.watching));
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  server.addNode('wk8-n1', '10.244.1.0/24');
  server.addNode('wk8-n2', '10.244.2.0/24');
  server.addNode('wk8-n3'); // no podCIDR yet: the controller-manager is slow

  const newAgent = (name: string): Agent => {
    const logs: Record<string, any>[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
    const manager = new KubeSubnetManager({ nodeName: name, netConfFile, kubeConfig: kubeConfigFor(server.url), logger, watchTimeoutSeconds: 30 });
    const agent: Agent = { name, manager, leases: new Map(), batches: [], logs, stop: new AbortController(), watching: Promise.resolve() };
    agents.push(agent);
    return agent;
  };
  const startWatch = (a: Agent): void => {
    a.watching = a.manager.watchLeases((events, snapshot) => {
      a.batches.push({ events, snapshot });
      if (snapshot) a.leases.clear();
      for (const e of events) {
        if (e.type === 'added') a.leases.set(e.lease.subnet.toString(), e.lease);
        else a.leases.delete(e.lease.subnet.toString());
      }
    }, a.stop.signal);
  };
  const allSee = (subnets: string[]) => () =>
    agents.every((a) => subnets.length === a.leases.size && subnets.every((s) => a.leases.has(s)));

  const [a1, a2, a3] = [newAgent('wk8-n1'), newAgent('wk8-n2'), newAgent('wk8-n3')] as [Agent, Agent, Agent];

  await t.test('each agent gets its node podCIDR and publishes annotations', async (t) => {
    const conf = await a1.manager.getNetworkConfig();
    t.equal(conf.network.toString(), '10.244.0.0/16');
    const l1 = await a1.manager.acquireLease(attrs('192.0.2.1'), {});
    const l2 = await a2.manager.acquireLease(attrs('192.0.2.2'), {});
    t.equal(l1.subnet.toString(), '10.244.1.0/24');
    t.equal(l2.subnet.toString(), '10.244.2.0/24');
    t.equal(l1.attrs.nodeName, 'wk8-n1');
    t.equal(l1.expiresAt, undefined, 'a podCIDR does not expire');

    let l3: Lease | undefined;
    const pending = a3.manager.acquireLease(attrs('192.0.2.3'), {}).then((l) => (l3 = l));
    await sleep(300);
    t.equal(l3, undefined, 'waits while the node has no podCIDR');
    server.setPodCIDR('wk8-n3', '10.244.3.0/24');
    await pending;
    t.equal(l3?.subnet.toString(), '10.244.3.0/24', 'takes the podCIDR once assigned');
    t.ok(a3.logs.some((l) => /waiting for kube-controller-manager/.test(l.msg)), 'said what it waits for');

    const ann = server.node('wk8-n1')?.metadata.annotations;
    t.same(ann, {
      'weft.io/public-ip': '192.0.2.1',
      'weft.io/backend-type': 'vxlan',
      'weft.io/backend-data': '{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}',
      'weft.io/kube-subnet-manager': 'true',
    });
    const patches = server.calls.filter((c) => c.verb === 'patch' && c.resource === 'nodes');
    t.equal(patches.length, 3, 'one annotation patch per node');
    t.ok(patches.every((c) => c.contentType?.startsWith('application/merge-patch+json')), 'as JSON merge patches');
    await a1.manager.acquireLease(attrs('192.0.2.1'), {});
    t.equal(server.calls.filter((c) => c.verb === 'patch').length, 3, 'unchanged annotations are not patched again');
  });

  await t.test('a node that does not exist is one clear error', async (t) => {
    const stray = new KubeSubnetManager({ nodeName: 'wk8-nobody', netConfFile, kubeConfig: kubeConfigFor(server.url), logger: pino({ level: 'silent' }) });
    await t.rejects(stray.acquireLease(attrs('192.0.2.9'), {}), { name: 'WeftError', message: /node "wk8-nobody" does not exist.*NODE_NAME/ });
  });

  await t.test('agents see each other', async (t) => {
    for (const a of agents) startWatch(a);
    const subnets = ['10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24'];
    await waitFor('every agent to see 3 leases', allSee(subnets));
    for (const a of agents) {
      t.equal(a.batches[0]?.snapshot, true, `${a.name}: first batch is a snapshot`);
      t.equal(a.leases.get('10.244.2.0/24')?.attrs.publicIP.toString(), '192.0.2.2');
      t.same(a.leases.get('10.244.3.0/24')?.attrs.backendData, { VNI: 1, VtepMAC: '0e:00:00:00:00:01' });
      t.equal(a.leases.get('10.244.3.0/24')?.attrs.nodeName, 'wk8-n3');
    }
    await waitFor('3 open watches', () => server.openWatches === 3);
  });

  await t.test('republished attributes reach the peers', async (t) => {
    const current = a2.leases.get('10.244.2.0/24')!;
    await a2.manager.renewLease({ ...current, attrs: attrs('192.0.2.2', 7) });
    await waitFor('peers to see VNI 7', () => agents.every((a) => (a.leases.get('10.244.2.0/24')?.attrs.backendData as any)?.VNI === 7));
    t.ok(agents.every((a) => (a.leases.get('10.244.2.0/24')?.attrs.backendData as any)?.VNI === 7), 'VNI 7 seen by every agent');
  });

  await t.test('NetworkUnavailable=False once ready', async (t) => {
    await a1.manager.markNetworkAvailable();
    const conditions = server.node('wk8-n1')?.status.conditions;
    t.match(conditions, [{ type: 'Ready', status: 'True' }, { type: 'NetworkUnavailable', status: 'False', reason: 'WeftIsUp' }]);
    await a1.manager.markNetworkAvailable();
    t.equal(server.node('wk8-n1')?.status.conditions.length, 2, 'patched again, still one condition of the type');
    const statusPatch = server.calls.find((c) => c.resource === 'nodes/status');
    t.match(statusPatch?.contentType, /^application\/strategic-merge-patch\+json/);
  });

  await t.test('bad annotations are skipped with one warning per node', async (t) => {
    const warnings = (a: Agent, node: string) => a.logs.filter((l) => l.level === 40 && l.node === node);
    const hostile: [Record<string, string>, RegExp][] = [
      [{ 'weft.io/public-ip': 'not-an-ip', 'weft.io/backend-type': 'vxlan' }, /PublicIP "not-an-ip" is not an IP/],
      [{ 'weft.io/public-ip': '192.0.2.4', 'weft.io/backend-type': 'gre' }, /unknown BackendType "gre"/],
      [{ 'weft.io/public-ip': '127.0.0.1', 'weft.io/backend-type': 'vxlan' }, /not a unicast host address/],
      [{ 'weft.io/public-ip': '192.0.2.4', 'weft.io/backend-type': 'vxlan', 'weft.io/backend-data': '{"VNI":' }, /backend-data is not JSON/],
      [{ 'weft.io/public-ip': '192.0.2.4', 'weft.io/backend-type': 'vxlan', 'weft.io/backend-data': '{"__proto__":{"x":1}}' }, /__proto__/],
      [{ 'weft.io/public-ip': '192.0.2.4', 'weft.io/backend-type': 'vxlan', 'weft.io/backend-data': `"${'x'.repeat(9000)}"` }, /larger than 8192 bytes/],
    ];
    server.addNode('wk8-bad', '10.244.4.0/24');
    for (const [annotations, reason] of hostile) {
      server.setAnnotations('wk8-bad', { 'weft.io/backend-data': null, ...annotations });
      await waitFor(`a warning matching ${reason}`, () => agents.every((a) => warnings(a, 'wk8-bad').some((l) => reason.test(l.reason))));
    }
    const before = warnings(a1, 'wk8-bad').length;
    server.setAnnotations('wk8-bad', { unrelated: 'touch' }); // same bad value, new event
    server.bookmark();
    await sleep(300);
    t.equal(warnings(a1, 'wk8-bad').length, before, 'the same bad value is not warned about again');
    t.equal(before, hostile.length, 'one warning per bad value');
    t.notOk(a1.leases.has('10.244.4.0/24'), 'no lease from a bad node');

    server.addNode('wk8-outside', '10.99.0.0/24', { 'weft.io/public-ip': '192.0.2.5', 'weft.io/backend-type': 'vxlan' });
    await waitFor('the outside-Network warning', () => warnings(a1, 'wk8-outside').some((l) => /outside Network/.test(l.reason)));
    server.addNode('wk8-quiet', '10.244.6.0/24'); // weft not running there yet: no lease, no warning
    server.setAnnotations('wk8-bad', { 'weft.io/public-ip': '192.0.2.4', 'weft.io/backend-type': 'vxlan', 'weft.io/backend-data': 'null' });
    await waitFor('the repaired node to appear', () => agents.every((a) => a.leases.has('10.244.4.0/24')));
    t.equal(warnings(a1, 'wk8-quiet').length, 0, 'a node without weft annotations is not warned about');
    t.same(a2.leases.get('10.244.4.0/24')?.attrs.backendData, null);
  });

  await t.test("flannel's annotation names are read", async (t) => {
    server.addNode('wk8-flannel', '10.244.5.0/24', {
      'flannel.alpha.coreos.com/public-ip': '192.0.2.50',
      'flannel.alpha.coreos.com/backend-type': 'vxlan',
      'flannel.alpha.coreos.com/backend-data': '{"VNI":1,"VtepMAC":"0e:00:00:00:00:50"}',
    });
    await waitFor('the flannel node', () => agents.every((a) => a.leases.get('10.244.5.0/24')?.attrs.publicIP.toString() === '192.0.2.50'));
    t.ok(agents.every((a) => a.leases.get('10.244.5.0/24')?.attrs.publicIP.toString() === '192.0.2.50'), "the flannel-annotated node is seen by every agent");
  });

  await t.test('a deleted node is removed', async (t) => {
    const removedSeen = (a: Agent) => a.batches.some((b) => b.events.some((e) => e.type === 'removed' && e.lease.subnet.toString() === '10.244.5.0/24'));
    server.deleteNode('wk8-flannel');
    await waitFor('removed events', () => agents.every(removedSeen));
    t.notOk(a1.leases.has('10.244.5.0/24'));
  });

  await t.test('a dropped watch resumes without missing a change', async (t) => {
    server.dropWatches();
    server.deleteNode('wk8-bad'); // while every watch is down
    await waitFor('watches to reconnect', () => server.openWatches === 3);
    await waitFor('the deletion to arrive', () => agents.every((a) => !a.leases.has('10.244.4.0/24')));
    server.addNode('wk8-late', '10.244.8.0/24', { 'weft.io/public-ip': '192.0.2.8', 'weft.io/backend-type': 'host-gw' });
    await waitFor('a new node after the resume', () => agents.every((a) => a.leases.has('10.244.8.0/24')));
    t.ok(agents.every((a) => !a.leases.has('10.244.4.0/24') && a.leases.has('10.244.8.0/24')), 'resumed from the last resourceVersion: the deletion during the outage and the later node both arrived');
  });

  await t.test('watch errors back off and resume', async (t) => {
    server.failingWatches = 6;
    server.dropWatches();
    server.addNode('wk8-during-errors', '10.244.11.0/24', { 'weft.io/public-ip': '192.0.2.11', 'weft.io/backend-type': 'vxlan' });
    await waitFor('the node added while watches failed', () => agents.every((a) => a.leases.has('10.244.11.0/24')));
    t.equal(server.failingWatches, 0, 'every failing watch was retried');
    t.ok(a1.logs.some((l) => l.level === 40 && /watching nodes failed; retrying/.test(l.msg) && /etcd leader changed/.test(l.reason)), 'logged with the reason');
    await waitFor('watches to reconnect', () => server.openWatches === 3);
  });

  for (const mode of ['event', 'http'] as const) {
    await t.test(`410 Gone (${mode === 'event' ? 'ERROR event' : 'HTTP status'}) -> list again, deltas only`, async (t) => {
      server.expiredAs = mode;
      const lists = () => server.calls.filter((c) => c.verb === 'list').length;
      const listsBefore = lists();
      const batchesBefore = a1.batches.length;
      server.dropWatches();
      const gone = mode === 'event' ? 'wk8-late' : 'wk8-late2';
      const added = mode === 'event' ? 'wk8-late2' : 'wk8-late3';
      const addedSubnet = mode === 'event' ? '10.244.9.0/24' : '10.244.10.0/24';
      const goneSubnet = mode === 'event' ? '10.244.8.0/24' : '10.244.9.0/24';
      server.deleteNode(gone);
      server.addNode(added, addedSubnet, { 'weft.io/public-ip': '192.0.2.9', 'weft.io/backend-type': 'vxlan' });
      server.compact();
      await waitFor('the re-list to bring the changes', () => agents.every((a) => a.leases.has(addedSubnet) && !a.leases.has(goneSubnet)));
      t.equal(lists() - listsBefore, 3, 'each agent listed once more');
      const newBatches = a1.batches.slice(batchesBefore);
      t.ok(newBatches.every((b) => !b.snapshot), 'the re-list is delivered as deltas');
      t.same(
        newBatches.flatMap((b) => b.events.map((e) => `${e.type} ${e.lease.subnet}`)).sort(),
        [`added ${addedSubnet}`, `removed ${goneSubnet}`],
        'exactly the changes, nothing replayed',
      );
      await waitFor('watches to reconnect', () => server.openWatches === 3);
    });
  }

  await t.test('a node deleted under its own agent: the lease is gone', async (t) => {
    const own = a3.leases.get('10.244.3.0/24')!;
    server.deleteNode('wk8-n3');
    const err = await a3.manager.renewLease(own).then(() => undefined, (e: unknown) => e);
    t.ok(err instanceof LeaseGoneError, 'renewLease throws LeaseGoneError');
    await waitFor('peers to drop wk8-n3', () => [a1, a2].every((a) => !a.leases.has('10.244.3.0/24')));
  });

  await t.test('the API calls made are exactly the RBAC table', async (t) => {
    t.same(server.unexpected, [], 'nothing outside the implemented endpoints was called');
    const made = new Set(server.calls.map((c) => `${c.verb} ${c.resource}`));
    // The subnet manager's rows: the pod, namespace and networkpolicy ones are PolicyWorldWatch's (test/unit/kube-policy-watch.test.ts).
    const table = new Set(KUBE_API_CALLS.filter((c) => c.resource.startsWith('nodes')).map((c) => `${c.verb} ${c.resource}`));
    t.same([...made].sort(), [...table].sort(), 'every node call in KUBE_API_CALLS was made, and no other');
  });

  await t.test('stopping ends the watches', async (t) => {
    for (const a of agents) a.stop.abort();
    await Promise.all(agents.map((a) => a.watching));
    await waitFor('watch connections to close', () => server.openWatches === 0);
    t.equal(server.openWatches, 0, 'all watches ended');
  });
});

/**
 * A stand-in API server and managers built on `netConf`, each manager's
 * watch ended and everything closed at the test's end.
 */
async function kubeFixture(t: Test, netConf: Record<string, unknown>) {
  const dir = mkdtempSync(join(tmpdir(), 'wk6-kube-'));
  const netConfFile = join(dir, 'net-conf.json');
  writeFileSync(netConfFile, JSON.stringify(netConf));
  const server = await FakeApiServer.start();
  const managers: KubeSubnetManager[] = [];
  const stop = new AbortController();
  const watches: Promise<void>[] = [];
  t.teardown(async () => {
    stop.abort();
    for (const m of managers) await m.close();
    await Promise.all(watches);
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const managerFor = (nodeName: string) => {
    const m = new KubeSubnetManager({ nodeName, netConfFile, kubeConfig: kubeConfigFor(server.url), logger: pino({ level: 'silent' }), watchTimeoutSeconds: 30 });
    managers.push(m);
    return m;
  };
  /** Follows `nodeName`'s view of the leases into a map by subnet. */
  const watchFrom = (nodeName: string): Map<string, Lease> => {
    const seen = new Map<string, Lease>();
    watches.push(managerFor(nodeName).watchLeases((events) => {
      for (const e of events) {
        if (e.type === 'added') seen.set(String(e.lease.subnet), e.lease);
        else seen.delete(String(e.lease.subnet));
      }
    }, stop.signal));
    return seen;
  };
  return { server, managerFor, watchFrom };
}

t.test('dual-stack: podCIDRs give both halves, the IPv6 annotations carry PublicIPv6 both ways', async (t) => {
  const { server, managerFor, watchFrom } = await kubeFixture(t, { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: '2001:db8:1000::/56', Backend: { Type: 'vxlan' } });
  const dual = (ip: string, ip6: string): LeaseAttrs => ({ ...attrs(ip), publicIPv6: IP.parse(ip6), backendV6Data: { VNI: 1, VtepMAC: '0e:00:00:00:00:06' } });
  server.addNode('wk6-n1', ['10.244.1.0/24', '2001:db8:1000:1::/64']);
  server.addNode('wk6-n2', ['10.244.2.0/24', '2001:db8:1000:2::/64']);
  server.addNode('wk6-v4only', '10.244.3.0/24');

  const m1 = managerFor('wk6-n1');
  const own = await m1.acquireLease(dual('192.0.2.1', '2001:db8::1'), {});
  t.same([String(own.subnet), String(own.ipv6Subnet)], ['10.244.1.0/24', '2001:db8:1000:1::/64'], 'the IPv6 podCIDR is the IPv6 half');
  t.match(server.node('wk6-n1')?.metadata.annotations, { 'weft.io/public-ipv6': '2001:db8::1', 'weft.io/backend-v6-data': '{"VNI":1,"VtepMAC":"0e:00:00:00:00:06"}' });

  // A peer reads it, and a flannel-annotated dual-stack node too.
  server.addNode('wk6-flannel', ['10.244.5.0/24', '2001:db8:1000:5::/64'], {
    'flannel.alpha.coreos.com/public-ip': '192.0.2.5',
    'flannel.alpha.coreos.com/public-ipv6': '2001:db8::5',
    'flannel.alpha.coreos.com/backend-type': 'vxlan',
    'flannel.alpha.coreos.com/backend-v6-data': '{"VNI":1,"VtepMAC":"7a:00:00:00:00:05"}',
  });
  const seen = watchFrom('wk6-n2');
  await waitFor('both dual-stack peers', () => seen.has('10.244.1.0/24') && seen.has('10.244.5.0/24'));
  const half = (subnet: string) => {
    const l = seen.get(subnet);
    return [String(l?.ipv6Subnet), String(l?.attrs.publicIPv6)];
  };
  t.same([half('10.244.1.0/24'), half('10.244.5.0/24')], [['2001:db8:1000:1::/64', '2001:db8::1'], ['2001:db8:1000:5::/64', '2001:db8::5']], "peers' IPv6 halves, weft's and flannel's annotations");

  // Renewal keeps both halves; a renewal without PublicIPv6 is a shape change, taken again as IPv4-only.
  const renewed = await m1.renewLease(own);
  t.equal(String(renewed.ipv6Subnet), '2001:db8:1000:1::/64', 'renewal keeps the IPv6 half');
  t.type(await m1.renewLease({ ...renewed, attrs: attrs('192.0.2.1') }).catch((e: unknown) => e), LeaseGoneError, 'losing PublicIPv6 asks for a re-acquire');
  const single = await m1.acquireLease(attrs('192.0.2.1'), {});
  t.same([String(single.subnet), single.ipv6Subnet], ['10.244.1.0/24', undefined], 'taken again without the IPv6 half');
  t.same(
    Object.keys(server.node('wk6-n1')?.metadata.annotations).filter((k) => /v6/.test(k)),
    [],
    'the IPv6 annotations are removed',
  );
  await waitFor('peers to see the IPv6 half go', () => seen.get('10.244.1.0/24')?.ipv6Subnet === undefined);
  t.ok(seen.has('10.244.1.0/24'), 'and keep its IPv4 half');

  // EnableIPv6 on a node without an IPv6 podCIDR: one line, cause and fix.
  const err = await managerFor('wk6-v4only').acquireLease(dual('192.0.2.3', '2001:db8::3'), {}).catch((e: unknown) => e);
  t.match(err, {
    name: 'WeftError',
    message: /^node wk6-v4only has no IPv6 range in spec\.podCIDRs \(10\.244\.3\.0\/24\), but net-conf has EnableIPv6; give kube-controller-manager a dual-stack --cluster-cidr/,
  });
  t.notMatch((err as Error).message, /\n/);
});

t.test('IPv6-only: the lone IPv6 podCIDR is the subnet; the address goes in flannel\'s IPv6 annotations both ways', async (t) => {
  const { server, managerFor, watchFrom } = await kubeFixture(t, { EnableIPv4: false, EnableIPv6: true, IPv6Network: '2001:db8:1000::/56', Backend: { Type: 'vxlan' } });
  server.addNode('wk6-v6a', ['2001:db8:1000:a::/64']);
  server.addNode('wk6-v6b', ['2001:db8:1000:b::/64']);
  const own = await managerFor('wk6-v6a').acquireLease(attrs('2001:db8::a'), {});
  t.same([String(own.subnet), String(own.attrs.publicIP), own.ipv6Subnet], ['2001:db8:1000:a::/64', '2001:db8::a', undefined], 'one lease, IPv6 only');
  t.match(server.node('wk6-v6a')?.metadata.annotations, { 'weft.io/public-ipv6': '2001:db8::a', 'weft.io/backend-v6-data': '{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}' });
  const seen = watchFrom('wk6-v6b');
  await waitFor('the IPv6-only peer', () => seen.has('2001:db8:1000:a::/64'));
  t.equal(String(seen.get('2001:db8:1000:a::/64')?.attrs.publicIP), '2001:db8::a', 'a peer reads its address back from the IPv6 annotation');
});
