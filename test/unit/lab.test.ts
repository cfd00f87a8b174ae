import t from 'tap';
import { parseProcStat, cpuSecondsBetween } from '../../src/bench/cpu.js';
import { parseIperfJson } from '../../src/bench/iperf.js';
import { formatMarkdown } from '../../src/bench/report.js';
import type { BenchResult } from '../../src/bench/runner.js';
import { alternatingOrder, median, ratio } from '../../src/bench/stats.js';
import { benchPlan } from '../../src/bench/variants.js';
import { weftConf } from '../../src/lab/cni.js';
import { formatPingMatrix } from '../../src/lab/ping.js';
import { checkLabName, hostAddress, labOfNs, nodeAddress, nodeSegment, segment, underlayNs } from '../../src/lab/topology.js';

t.test('lab names and namespaces', async (t) => {
  t.equal(checkLabName('demo'), 'demo');
  t.equal(underlayNs('demo'), 'wl-demo-ul');
  for (const bad of ['', 'Demo', 'a-b', '1ab', 'abcdefghijklm', 'a b']) t.throws(() => checkLabName(bad), /bad lab name/, bad);
  t.equal(labOfNs('wl-demo-n1-p2'), 'demo');
  t.equal(labOfNs('wl-t1-ul'), 't1');
  t.equal(labOfNs('wdp-probe'), undefined);
  t.equal(labOfNs('wl-'), undefined);
});

t.test('underlay addressing', async (t) => {
  t.equal(segment(0).gateway.toString(), '192.0.2.1');
  t.equal(segment(1).gateway.toString(), '198.51.100.1');
  t.equal(segment(2).cidr.toString(), '203.0.113.0/24');
  t.throws(() => segment(3));
  t.equal(nodeAddress(segment(0), 1).toString(), '192.0.2.11');
  t.equal(nodeAddress(segment(1), 4).toString(), '198.51.100.14');
  t.equal(hostAddress(segment(2), 0).toString(), '203.0.113.100');
  t.same([1, 2, 3, 4].map((i) => nodeSegment('flat', i)), [0, 0, 0, 0]);
  t.same([1, 2, 3, 4].map((i) => nodeSegment('routed', i)), [0, 1, 0, 1]);
});

t.test('pods use the weft CNI plugin, its state in the node dir', async (t) => {
  const conf = weftConf('/tmp/x/n1');
  t.match(conf, { type: 'weft', name: 'weft', subnetFile: '/tmp/x/n1/subnet.env', dataDir: '/tmp/x/n1/cni' });
  t.same(conf.delegate, { ipMasq: false, ipam: { dataDir: '/tmp/x/n1/ipam' } }, 'no NAT between pods; host-local state per node');
});

t.test('ping matrix text', async (t) => {
  const text = formatPingMatrix({
    ok: false,
    rows: [
      { from: 'n1-p1', to: 'n2-p1', ip: '10.0.2.2', ok: true },
      { from: 'n2-p1', to: 'n1-p1', ip: '10.0.1.2', ok: false },
    ],
  });
  const lines = text.split('\n');
  t.match(lines[1], /^n1-p1\s+\.\s+ok$/);
  t.match(lines[2], /^n2-p1\s+--\s+\.$/);
  t.equal(lines[3], '1/2 pod pairs reachable');
});

t.test('bench statistics', async (t) => {
  t.equal(median([3, 1, 2]), 2);
  t.equal(median([4, 1, 2, 3]), 2.5);
  t.ok(Number.isNaN(median([])));
  t.equal(ratio(1, 2), 0.5);
  t.ok(Number.isNaN(ratio(1, 0)));
  t.same(alternatingOrder(['a', 'b'], 0), ['a', 'b']);
  t.same(alternatingOrder(['a', 'b'], 1), ['b', 'a']);
});

t.test('/proc/stat deltas', async (t) => {
  const a = parseProcStat('cpu  100 0 50 1000 10 5 20 0 0 0\ncpu0 1 2 3\n');
  const b = parseProcStat('cpu  200 0 80 1100 10 5 60 0 0 0\n');
  t.same(a, { busy: 175, softirq: 20, idle: 1010 });
  t.same(cpuSecondsBetween(a, b), { busy: 1.7, softirq: 0.4, idle: 1 });
  t.throws(() => parseProcStat('intr 1 2\n'), /no aggregate cpu line/);
});

t.test('iperf3 JSON', async (t) => {
  const r = parseIperfJson(JSON.stringify({ end: { sum_received: { bits_per_second: 9e9, bytes: 5.6e9 }, sum_sent: { retransmits: 7 } } }));
  t.same(r, { bitsPerSecond: 9e9, bytes: 5.6e9, retransmits: 7 });
  t.throws(() => parseIperfJson(JSON.stringify({ error: 'unable to connect to server' })), /unable to connect/);
  t.throws(() => parseIperfJson('iperf3: error'), /no JSON/);
});

t.test('bench report names the ratio', async (t) => {
  const v = (label: string, gbps: number) => ({
    label,
    medianGbps: gbps,
    medianCpuSecondsPerGbit: 0.1,
    medianSoftirqSecondsPerGbit: 0.02,
    agentCpuSecondsTotal: 0.01,
    samples: [{ rep: 0, gbps, retransmits: 0, cpuSecondsPerGbit: 0.1, softirqSecondsPerGbit: 0.02, agentCpuSeconds: 0.01 }],
  });
  const r: BenchResult = {
    backend: 'host-gw',
    topology: 'flat',
    reps: 1,
    seconds: 5,
    startedAt: '2025-01-01T00:00:00.000Z',
    host: { cpus: 2, kernel: '6.1' },
    subject: v('weft host-gw', 9.8),
    baselines: [v('hand-built routes', 10)],
    comparisons: [{ baseline: 'hand-built routes', throughputRatio: 0.98, cpuPerGbitRatio: 1 }],
  };
  const md = formatMarkdown(r);
  t.match(md, /\| weft host-gw \| 9\.80 \|/);
  t.match(md, /\| hand-built routes \| 10\.00 \|/);
  t.match(md, /weft host-gw \/ hand-built routes\*\*: throughput 0\.980/);
});

t.test('bench plans: each backend against its hand-built equal', async (t) => {
  const labels = (p: ReturnType<typeof benchPlan>): string[] => [p.subject.label, ...p.baselines.map((b) => b.label)];
  t.same(labels(benchPlan('host-gw')), ['weft host-gw', 'hand-built routes']);
  t.same(labels(benchPlan('vxlan')), ['weft vxlan', 'hand-built vxlan', 'weft host-gw'], 'flat vxlan: the tunnel by hand, and no tunnel at all');
  const routed = benchPlan('vxlan', undefined, 'routed');
  t.same(labels(routed), ['weft vxlan', 'hand-built vxlan'], 'routed vxlan: host-gw cannot cross the router');
  t.match(routed.notes.join(), /host-gw cannot reach a node behind a router/, 'the report says why host-gw is missing');
  t.throws(() => benchPlan('host-gw', undefined, 'routed'), /host-gw cannot reach a node behind a router/);
});
