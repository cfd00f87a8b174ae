// Kubelet heartbeats (status-only MODIFIED events with the whole Node object)
// must cost the kube subnet manager nothing: no lease event, no programming
// pass, no parse of the node into a lease. Counted, never timed; the figures
// at scale are test/perf/kube-scale.test.ts's.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import t from 'tap';
import { parseNetConf } from '../../src/config/parse.js';
import type { NetConf } from '../../src/config/netconf.js';
import type { LeaseEvent } from '../../src/subnet/lease.js';
import { NodeLeaseTable } from '../../src/subnet/kube/lease-table.js';
import { KubeSubnetManager } from '../../src/subnet/kube/manager.js';
import { nodeLease, type NodeObject } from '../../src/subnet/kube/node-lease.js';
import { FakeApiServer } from '../fixtures/kube/apiserver.js';
import { kubeConfigFor } from '../fixtures/kube/kubeconfig.js';
import { realisticNode } from '../fixtures/kube/node-object.js';

const NET_CONF = JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } });
const net = parseNetConf(NET_CONF);

const weft = (ip: string): Record<string, string> => ({
  'weft.io/public-ip': ip,
  'weft.io/backend-type': 'vxlan',
  'weft.io/backend-data': '{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}',
  'weft.io/kube-subnet-manager': 'true',
});

/** Events as plain text: "added 10.244.1.0/24 192.0.2.1". */
const show = (events: LeaseEvent[]): string[] => events.map((e) => `${e.type} ${e.lease.subnet} ${e.lease.attrs.publicIP}`);

/** `node` as the next watch event would carry it after `change` (a fresh copy, as JSON from the wire is). */
function changed(node: NodeObject, change: (n: Record<string, any>) => void): NodeObject {
  const copy = structuredClone(node) as Record<string, any>;
  copy.metadata.resourceVersion = String(Number(copy.metadata.resourceVersion ?? 100) + 1);
  change(copy);
  return copy;
}

/** A status heartbeat: each kubelet condition's lastHeartbeatTime moves. */
function beat(n: Record<string, any>): void {
  const now = new Date(Date.now() + 10_000).toISOString();
  for (const c of n.status.conditions) if (c.type !== 'NetworkUnavailable') c.lastHeartbeatTime = now;
}

t.test('the lease table parses a node only when what weft reads changed', async (t) => {
  let parses = 0;
  const table = new NodeLeaseTable((node, conf: NetConf) => {
    parses++;
    const r = nodeLease(node, conf);
    return r.kind === 'lease' ? r.lease : undefined;
  });
  const n1 = realisticNode('ks-n1', 1, ['10.244.1.0/24'], weft('192.0.2.1'));
  const n2 = realisticNode('ks-n2', 2, ['10.244.2.0/24'], weft('192.0.2.2'));
  const step = (events: LeaseEvent[]) => ({ events: show(events), parses });

  const listed = step(table.replace([n1, n2], net));
  const heartbeat = step(table.apply('MODIFIED', changed(n1, beat), net));
  const unrelated = step(
    table.apply(
      'MODIFIED',
      changed(n1, (n) => {
        n.metadata.annotations['node.alpha.kubernetes.io/ttl'] = '15';
        n.metadata.labels['example.com/role'] = 'db';
        n.status.images.pop();
      }),
      net,
    ),
  );
  const relisted = step(table.replace([changed(n1, beat), changed(n2, beat)], net));
  const podCidr = changed(n1, (n) => (n.spec = { ...n.spec, podCIDR: '10.244.9.0/24', podCIDRs: ['10.244.9.0/24'] }));
  const movedRange = step(table.apply('MODIFIED', podCidr, net));
  const newAddress = changed(podCidr, (n) => (n.metadata.annotations['weft.io/public-ip'] = '192.0.2.9'));
  const movedAddress = step(table.apply('MODIFIED', newAddress, net));
  const flannelAdded = step(table.apply('MODIFIED', changed(newAddress, (n) => (n.metadata.annotations['flannel.alpha.coreos.com/public-ip'] = '192.0.2.8')), net));
  const unpublished = step(table.apply('MODIFIED', changed(n2, (n) => delete n.metadata.annotations['weft.io/backend-type']), net));
  const otherNetConf = step(table.apply('MODIFIED', changed(newAddress, beat), parseNetConf(NET_CONF)));
  const deleted = step(table.apply('DELETED', newAddress, net));

  t.strictSame(
    { listed, heartbeat, unrelated, relisted, movedRange, movedAddress, flannelAdded, unpublished, otherNetConf, deleted },
    {
      listed: { events: ['added 10.244.1.0/24 192.0.2.1', 'added 10.244.2.0/24 192.0.2.2'], parses: 2 },
      heartbeat: { events: [], parses: 2 },
      unrelated: { events: [], parses: 2 },
      relisted: { events: [], parses: 2 },
      movedRange: { events: ['removed 10.244.1.0/24 192.0.2.1', 'added 10.244.9.0/24 192.0.2.1'], parses: 3 },
      movedAddress: { events: ['added 10.244.9.0/24 192.0.2.9'], parses: 4 },
      // flannel's names are read too: a change there is read again (weft's own names still win).
      flannelAdded: { events: [], parses: 5 },
      unpublished: { events: ['removed 10.244.2.0/24 192.0.2.2'], parses: 6 },
      // A reloaded net-conf may judge the same node differently.
      otherNetConf: { events: [], parses: 7 },
      deleted: { events: ['removed 10.244.9.0/24 192.0.2.9'], parses: 7 },
    },
  );
});

t.test('the manager: heartbeats from the API server reach no one; a podCIDR or annotation change does', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ks-heartbeats-'));
  const netConfFile = join(dir, 'net-conf.json');
  writeFileSync(netConfFile, NET_CONF);
  const server = await FakeApiServer.start();
  const manager = new KubeSubnetManager({ nodeName: 'ks-n1', netConfFile, kubeConfig: kubeConfigFor(server.url), logger: pino({ level: 'silent' }) });
  const stop = new AbortController();
  const batches: string[][] = [];
  let watching: Promise<void> = Promise.resolve();
  t.teardown(async () => {
    stop.abort();
    await manager.close();
    await watching;
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const names = ['ks-n1', 'ks-n2', 'ks-n3'];
  server.addNodes(names.map((name, i) => ({ name, podCIDRs: [`10.244.${i + 1}.0/24`], annotations: weft(`192.0.2.${i + 1}`) })));
  watching = manager.watchLeases((events) => void batches.push(show(events)), stop.signal);
  const waitFor = async (what: string, cond: () => boolean): Promise<void> => {
    for (const until = Date.now() + 15_000; !cond(); await sleep(20)) if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
  };
  await waitFor('the snapshot', () => batches.length === 1);

  const counters = { ...manager.watchCounters };
  for (let round = 0; round < 3; round++) for (const name of names) server.heartbeat(name);
  await waitFor('the heartbeats', () => manager.watchCounters.events - counters.events === 9);
  const afterHeartbeats = { batches: batches.length - 1, parses: manager.watchCounters.parses - counters.parses };

  server.setPodCIDR('ks-n2', '10.244.20.0/24');
  await waitFor('the podCIDR change', () => batches.length === 2);
  server.setAnnotations('ks-n3', { 'weft.io/public-ip': '192.0.2.33' });
  await waitFor('the annotation change', () => batches.length === 3);

  t.strictSame(
    { snapshot: batches[0], afterHeartbeats, podCidr: batches[1], annotation: batches[2] },
    {
      snapshot: ['added 10.244.1.0/24 192.0.2.1', 'added 10.244.2.0/24 192.0.2.2', 'added 10.244.3.0/24 192.0.2.3'],
      afterHeartbeats: { batches: 0, parses: 0 },
      podCidr: ['removed 10.244.2.0/24 192.0.2.2', 'added 10.244.20.0/24 192.0.2.2'],
      annotation: ['added 10.244.3.0/24 192.0.2.33'],
    },
  );
});
