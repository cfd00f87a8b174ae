// Kube mode at scale: one real kube subnet manager (the real
// @kubernetes/client-node watch) follows 1000 realistic Node objects
// (test/fixtures/kube/node-object.ts) on the stand-in API server, run as a
// process of its own so its CPU is not counted here, while every node's
// kubelet heartbeats its status every 10 s. A measurement, not a test: it
// reports figures with t.comment and asserts only behaviour (heartbeats reach
// the manager and cause no lease events and no parsing). Opt-in:
//   npx tap test/perf/kube-scale.test.ts
// WEFT_KUBE_SCALE_NODES (1000), WEFT_KUBE_SCALE_SECONDS (60) and
// WEFT_KUBE_SCALE_PERIOD_MS (10000) change the scale.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import t from 'tap';
import { KubeSubnetManager } from '../../src/subnet/kube/manager.js';
import { ApiServerProcess } from '../fixtures/kube/apiserver-process.js';
import type { NodeSpec } from '../fixtures/kube/apiserver.js';
import { kubeConfigFor } from '../fixtures/kube/kubeconfig.js';

const NODES = Number(process.env.WEFT_KUBE_SCALE_NODES ?? 1000);
const SECONDS = Number(process.env.WEFT_KUBE_SCALE_SECONDS ?? 60);
const PERIOD_MS = Number(process.env.WEFT_KUBE_SCALE_PERIOD_MS ?? 10_000);
const IDLE_SECONDS = 10;
/** Room for 32768 /24 podCIDRs. */
const NET_CONF = JSON.stringify({ Network: '10.128.0.0/9', Backend: { Type: 'vxlan' } });

function spec(i: number): NodeSpec {
  return {
    name: `ks-node-${String(i).padStart(4, '0')}`,
    podCIDRs: [`10.${128 + (i >> 8)}.${i & 255}.0/24`],
    annotations: {
      'weft.io/public-ip': `198.51.100.${i % 250}`,
      'weft.io/backend-type': 'vxlan',
      'weft.io/backend-data': JSON.stringify({ VNI: 1, VtepMAC: `0e:00:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` }),
      'weft.io/kube-subnet-manager': 'true',
    },
  };
}


async function waitFor(what: string, cond: () => boolean, timeoutMs = 120_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const cpuMs = (): number => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};

t.test(`${NODES} nodes heartbeating every ${PERIOD_MS / 1000} s, one watching manager`, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ks-kube-scale-'));
  const netConfFile = join(dir, 'net-conf.json');
  writeFileSync(netConfFile, NET_CONF);
  let api: ApiServerProcess | undefined;
  let manager: KubeSubnetManager | undefined;
  const stop = new AbortController();
  let watching: Promise<void> = Promise.resolve();
  t.teardown(async () => {
    stop.abort();
    await manager?.close();
    await watching;
    await api?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  api = await ApiServerProcess.start({ host: '127.0.0.1', port: 0, logFile: join(dir, 'apiserver.log') });
  const specs = Array.from({ length: NODES }, (_, i) => spec(i));
  await api.addNodes(specs);
  const sample = await api.node(specs[0]!.name);
  const nodeBytes = Buffer.byteLength(JSON.stringify(sample));

  manager = new KubeSubnetManager({ nodeName: specs[0]!.name, netConfFile, kubeConfig: kubeConfigFor(api.url), logger: pino({ level: 'silent' }) });
  let leases = 0;
  let batchesAfterSnapshot = 0;
  let leaseEventsAfterSnapshot = 0;
  // What the agent does with a batch (agent.ts onLeaseEvents): every batch is a programming pass.
  watching = manager.watchLeases((events, snapshot) => {
    if (snapshot) leases = events.length;
    else {
      batchesAfterSnapshot++;
      leaseEventsAfterSnapshot += events.length;
    }
  }, stop.signal);
  await waitFor('the snapshot of every node', () => leases === NODES);

  const before = { ...manager.watchCounters };
  const server0 = await api.watchStats();
  const cpu0 = cpuMs();
  const start = Date.now();
  await api.startHeartbeats(PERIOD_MS);
  await sleep(SECONDS * 1000);
  await api.stopHeartbeats();
  const server1 = await api.watchStats();
  // Let the manager read what is still in flight before the counters are taken.
  await waitFor('the manager to read every event sent', () => manager!.watchCounters.events - before.events >= server1.events - server0.events, 30_000);
  const cpu = cpuMs() - cpu0;
  const minutes = (Date.now() - start) / 60_000;
  const after = manager.watchCounters;
  const received = after.events - before.events;
  const parses = after.parses - before.parses;
  const batches = after.leaseBatches - before.leaseBatches;
  const heartbeats = server1.heartbeats - server0.heartbeats;
  // What the process costs with the watch open and nothing happening: timers, GC, this script.
  await sleep(2000);
  const idle0 = cpuMs();
  await sleep(IDLE_SECONDS * 1000);
  const idlePerMin = ((cpuMs() - idle0) / IDLE_SECONDS) * 60;
  const perMin = (n: number): string => (n / minutes).toFixed(0);

  t.comment(`Node object: ${nodeBytes} bytes of JSON; ${NODES} nodes, heartbeat every ${PERIOD_MS / 1000} s, ${minutes.toFixed(2)} min measured`);
  t.comment(`watch: ${perMin(received)} events/min, ${((server1.bytes - server0.bytes) / minutes / 1e6).toFixed(1)} MB/min received`);
  t.comment(`manager CPU: ${perMin(cpu)} ms/min (${((cpu / (minutes * 60_000)) * 100).toFixed(1)} % of a core; ${idlePerMin.toFixed(0)} ms/min idle); stand-in server CPU: ${perMin(server1.cpuMs - server0.cpuMs)} ms/min`);
  t.comment(`of ${heartbeats} heartbeats: ${batchesAfterSnapshot} lease batches to the agent (= programming passes), ${leaseEventsAfterSnapshot} lease events, ${parses} node parses into a lease`);

  // The floor any client of this API pays: JSON.parse of each event line (the client library does it).
  const line = JSON.stringify({ type: 'MODIFIED', object: sample });
  const p0 = cpuMs();
  for (let i = 0; i < received; i++) JSON.parse(line);
  t.comment(`of which JSON.parse of the event lines alone: about ${perMin(cpuMs() - p0)} ms/min`);

  t.ok(received >= heartbeats, 'every heartbeat reached the manager as a watch event');
  t.strictSame({ batches: batchesAfterSnapshot, leaseEvents: leaseEventsAfterSnapshot, parses }, { batches: 0, leaseEvents: 0, parses: 0 }, 'heartbeats cause no lease event, no programming pass and no parse');
});
