// NetworkPolicy at scale, a measurement (figures by t.comment), opt-in:
//   npx tap test/perf/policy-scale.test.ts
// A two-node kube-mode lab (host-gw) whose stand-in API server holds 1000
// pods (two real bench pods, the rest objects only, about a tenth of them on
// n2) and 200 policies. Reported: the time from a policy change in the API
// to its rules in n2's kernel (weft_policy_resource_version, polled through
// a unix-socket bridge), the nft table's size, the agent's memory; then
// iperf3 between the two bench pods with 0 and with 100 policies selecting
// the server, alternating, in one run. WEFT_POLICY_SCALE_CHANGES (20),
// WEFT_POLICY_SCALE_REPS (3) and WEFT_POLICY_SCALE_SECONDS (5) change it.
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { startIperfServer, runIperfClient } from '../../src/bench/iperf.js';
import { median, percentile } from '../../src/bench/stats.js';
import { processRssKiB } from '../../src/core/process.js';
import { bridgeAgentMetrics, metricsAt, startKubeLab } from '../e2e/support/kube-lab.js';

const CHANGES = Number(process.env.WEFT_POLICY_SCALE_CHANGES ?? 20);
const REPS = Number(process.env.WEFT_POLICY_SCALE_REPS ?? 3);
const SECONDS = Number(process.env.WEFT_POLICY_SCALE_SECONDS ?? 5);
const PODS = 1000;
const POLICIES = 200;
const NAMESPACES = 10;

type Policy = { apiVersion: string; kind: string; metadata: { namespace: string; name: string }; spec: Record<string, unknown> };
const policy = (namespace: string, name: string, spec: Record<string, unknown>): Policy => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace, name }, spec });

/** Policy j: selects app-(j%50) pods in its namespace; ingress from the next namespace's tier-(j%3) pods on web ports, egress to DNS and a /24. */
function scalePolicy(j: number, extraPort = 0): Policy {
  return policy(`ns-${j % NAMESPACES}`, `p-${j}`, {
    podSelector: { matchLabels: { app: `app-${j % 50}` } },
    policyTypes: j % 4 === 0 ? ['Ingress', 'Egress'] : ['Ingress'],
    ingress: [
      {
        from: [{ namespaceSelector: { matchLabels: { ns: `ns-${(j + 1) % NAMESPACES}` } }, podSelector: { matchLabels: { tier: `t${j % 3}` } } }, { ipBlock: { cidr: '203.0.113.0/24', except: ['203.0.113.128/25'] } }],
        ports: [{ protocol: 'TCP', port: 80 }, { protocol: 'TCP', port: 8080, endPort: 8090 }, ...(extraPort ? [{ protocol: 'TCP', port: extraPort }] : [])],
      },
    ],
    ...(j % 4 === 0 ? { egress: [{ to: [{ namespaceSelector: {} }], ports: [{ protocol: 'UDP', port: 53 }] }] } : {}),
  });
}

t.test('1000 pods and 200 policies: change to kernel, table size, agent memory; throughput with 0 and 100 policies', async (t) => {
  const kube = await startKubeLab(t, { name: 'pscale', nodes: 2, backend: 'host-gw' });
  const { lab, api } = kube;
  const [n1, n2] = lab.nodes as [typeof lab.nodes[0], typeof lab.nodes[0]];
  const { socket } = bridgeAgentMetrics(lab, n2, lab.dir);
  const rvOnN2 = async (): Promise<number> => Number((await metricsAt(socket)).get('weft_policy_resource_version') ?? 0);
  const untilApplied = async (rv: string): Promise<number> => {
    const from = performance.now();
    while ((await rvOnN2()) < Number(rv)) {
      if (performance.now() - from > 120_000) throw new Error(`n2 did not apply resourceVersion ${rv} within 120 s`);
      await sleep(2);
    }
    return performance.now() - from;
  };

  // The two bench pods, real: the client on n1, the server on n2.
  const client = await lab.addPod(n1);
  const server = await lab.addPod(n2);
  await api.upsertNamespace('bench', { ns: 'bench' });
  await api.upsertPod({ namespace: 'bench', name: 'client', labels: { app: 'bench-client' }, nodeName: n1.ns, ips: [client.ip] });
  await api.upsertPod({ namespace: 'bench', name: 'server', labels: { app: 'bench-server' }, nodeName: n2.ns, ips: [server.ip] });

  const rssMiB = (): number => (processRssKiB(n2.agentPid!) ?? 0) / 1024;
  const rssBefore = rssMiB();

  // 998 more pods as objects: every ninth on n2 (addresses in n2's subnet, after the bench pod's), the rest on nodes that do not exist.
  for (let i = 0; i < NAMESPACES; i++) await api.upsertNamespace(`ns-${i}`, { ns: `ns-${i}` });
  const n2Base = n2.subnet!.replace(/0\/24$/, '');
  const specs = Array.from({ length: PODS - 2 }, (_, i) => {
    const onN2 = i % 9 === 0;
    return {
      namespace: `ns-${i % NAMESPACES}`,
      name: `pod-${i}`,
      labels: { app: `app-${i % 50}`, tier: `t${i % 3}` },
      nodeName: onN2 ? n2.ns : `virtual-${i % 20}`,
      ips: [onN2 ? `${n2Base}${10 + i / 9}` : `10.250.${Math.floor(i / 250)}.${(i % 250) + 1}`],
      ports: [{ name: 'http', containerPort: 80 }],
    };
  });
  await api.addPods(specs);
  const loaded = await api.addPolicies(Array.from({ length: POLICIES }, (_, j) => scalePolicy(j)));
  const loadMs = await untilApplied(loaded);

  // One policy at a time changed (a port added), each change waited for on n2.
  const latencies: number[] = [];
  for (let k = 0; k < CHANGES; k++) {
    const j = (k * 10) % POLICIES; // selects app-(j%50), which has pods on n2
    const rv = await api.upsertPolicy(scalePolicy(j, 9000 + k));
    latencies.push(await untilApplied(rv));
  }
  const metrics = await metricsAt(socket);
  const table = (await lab.exec(n2, ['nft', 'list', 'table', 'inet', 'weft'])).stdout;
  const rss = rssMiB();
  t.comment(`all ${POLICIES} policies over ${PODS} pods in n2's kernel ${Math.round(loadMs)} ms after the bulk load`);
  t.comment(`policy change -> rules in n2's kernel (${CHANGES} changes): p50 ${Math.round(median(latencies))} ms, p99 ${Math.round(percentile(latencies, 99))} ms, max ${Math.round(Math.max(...latencies))} ms`);
  t.comment(`n2's table: ${metrics.get('weft_policy_rules')} rules, ${metrics.get('weft_policy_set_elements')} set elements, ${metrics.get('weft_policy_isolated_pods')} isolated pods, ${table.split('\n').length} lines (${Math.round(table.length / 1024)} KiB) of nft list`);
  t.comment(`n2's agent RSS: ${rss.toFixed(1)} MiB with ${PODS} pods and ${POLICIES} policies (${rssBefore.toFixed(1)} MiB before they were created)`);
  t.equal(Number(metrics.get('weft_policy_policies')), POLICIES, 'n2 enforces every policy');

  // Throughput: the server selected by 0 or by 100 policies (the last of them the one that admits the client).
  const benchPolicies = Array.from({ length: 100 }, (_, i) =>
    policy('bench', `sel-${i}`, {
      podSelector: { matchLabels: { app: 'bench-server' } },
      ingress: [{ from: [{ podSelector: { matchLabels: { app: i === 99 ? 'bench-client' : `other-${i}` } } }], ports: [{ protocol: 'TCP', port: 5201 }] }],
    }));
  await startIperfServer(server.ns, lab.dir);
  const gbps: Record<'0' | '100', number[]> = { 0: [], 100: [] };
  let selecting = false;
  for (let rep = 0; rep < REPS + 1; rep++) {
    for (const variant of (rep % 2 ? ['100', '0'] : ['0', '100']) as ('0' | '100')[]) {
      if ((variant === '100') !== selecting) {
        let rv = '';
        if (variant === '100') rv = await api.addPolicies(benchPolicies);
        else for (const p of benchPolicies) rv = await api.deletePolicy('bench', p.metadata.name);
        await untilApplied(rv);
        selecting = variant === '100';
      }
      const r = await runIperfClient(client.ns, server.ip, SECONDS);
      if (rep > 0) gbps[variant].push(r.bitsPerSecond / 1e9); // rep 0 is the warm-up
    }
  }
  const m0 = median(gbps[0]);
  const m100 = median(gbps[100]);
  t.comment(`iperf3 ${SECONDS} s, ${REPS} reps after a warm-up: 0 policies ${m0.toFixed(2)} Gbit/s (${gbps[0].map((g) => g.toFixed(2)).join(', ')}), 100 policies ${m100.toFixed(2)} Gbit/s (${gbps[100].map((g) => g.toFixed(2)).join(', ')}); ratio ${(m100 / m0).toFixed(3)}`);
  t.ok(gbps[100].every((g) => g > 0), 'the client reaches the server through 100 policies');
});
