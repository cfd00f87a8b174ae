import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseProcStat, cpuSecondsBetween } from '../../src/bench/cpu.js';
import { parseIperfJson } from '../../src/bench/iperf.js';
import { formatMarkdown } from '../../src/bench/report.js';
import type { BenchResult } from '../../src/bench/runner.js';
import { alternatingOrder, median, ratio } from '../../src/bench/stats.js';
import { benchPlan, handSubnet } from '../../src/bench/variants.js';
import { checkBackendOptions } from '../../backends/registry.js';
import { labNetConfFrom } from '../../src/cli/lab.js';
import { BACKEND_TYPES, type BackendType } from '../../src/config/netconf.js';
import { parseNetConf } from '../../src/config/parse.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import { weftConf } from '../../src/lab/cni.js';
import { httpUrl } from '../../src/lab/etcd.js';
import { labNetConf } from '../../src/lab/lab.js';
import { formatPingMatrix, pingMatrices } from '../../src/lab/ping.js';
import { labFamilies, nodeSubnet, nodeUnderlayIP, podAddress } from '../../src/lab/state.js';
import { checkLabName, hostAddress, ipFamilyName, labOfNs, nodeAddress, nodeSegment, parseIpFamily, segment, underlayNs } from '../../src/lab/topology.js';

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

t.test('IPv6 underlay: a /64 per segment inside 2001:db8::/48, host numbers as in IPv4', async (t) => {
  const segments = [0, 1, 2].map((i) => segment(i, 6));
  t.same(segments.map((s) => [s.bridge, s.cidr.toString(), s.gateway.toString()]), [
    ['br0', '2001:db8::/64', '2001:db8::1'],
    ['br1', '2001:db8:0:1::/64', '2001:db8:0:1::1'],
    ['br2', '2001:db8:0:2::/64', '2001:db8:0:2::1'],
  ]);
  t.same([nodeAddress(segments[0]!, 1), nodeAddress(segments[1]!, 4), hostAddress(segments[2]!, 0)].map(String), ['2001:db8::11', '2001:db8:0:1::14', '2001:db8:0:2::100']);
  const underlay = Cidr.parse('2001:db8::/48');
  const all = segments.flatMap((s) => [s.gateway, nodeAddress(s, 89), hostAddress(s, 150)]);
  t.same(all.filter((ip) => !underlay.contains(ip)).map(String), [], 'every underlay address, the highest included, lies inside 2001:db8::/48');
  t.same(segments.map((s) => s.index), [0, 1, 2], 'a segment is the same bridge in both families');
});

t.test('--ip-family names', async (t) => {
  t.same(['ipv4', '4', 'ipv6', '6', 'dual'].map((n) => parseIpFamily(n)), [[4], [4], [6], [6], [4, 6]]);
  t.same([[4], [6], [4, 6]].map((f) => ipFamilyName(f as (4 | 6)[])), ['ipv4', 'ipv6', 'dual']);
  t.throws(() => parseIpFamily('both'), { name: 'WeftError', message: /^--ip-family "both" is not an address family; use ipv4, ipv6, dual/ });
  t.same([{}, { families: [6, 4] }, { families: [6, 6] }].map((s) => labFamilies(s as { families?: (4 | 6)[] })), [[4], [4, 6], [6]], 'IPv4 first, each once; IPv4 for labs from before dual-stack');
});

t.test('the lab net-conf per family: flannel keys, a /64 per node from 2001:db8:1000::/56', async (t) => {
  t.same(labNetConf('host-gw'), { Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } }, 'IPv4: as before dual-stack');
  t.same(labNetConf('vxlan', [4, 6], { VNI: 2 }), {
    Network: '10.244.0.0/16',
    EnableIPv6: true,
    IPv6Network: '2001:db8:1000::/56',
    IPv6SubnetLen: 64,
    Backend: { Type: 'vxlan', VNI: 2 },
  });
  t.same(labNetConf('host-gw', [6]), { EnableIPv4: false, EnableIPv6: true, IPv6Network: '2001:db8:1000::/56', IPv6SubnetLen: 64, Backend: { Type: 'host-gw' } });
  t.same([handSubnet(4, 3), handSubnet(6, 3), handSubnet(6, 17)].map(String), ['10.244.3.0/24', '2001:db8:1000:3::/64', '2001:db8:1000:11::/64'], 'hand-built labs: subnet index = node index');
  t.equal(httpUrl('2001:db8::1', 2379), 'http://[2001:db8::1]:2379', 'an IPv6 etcd endpoint in brackets');
  t.equal(httpUrl('192.0.2.1', 2379), 'http://192.0.2.1:2379');
});

t.test('lab net-conf flags: checked as the agent checks them, contradictions named', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wl-unit-netconf-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const v4 = join(dir, 'v4.json');
  await writeFile(v4, JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } }));
  t.same(labNetConfFrom({ file: v4 }), { netConf: { Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } }, families: [4] }, 'the file as written; its families');
  t.throws(() => labNetConfFrom({ file: v4, families: [4, 6] }), { name: 'WeftError', message: /v4\.json runs ipv4 but --ip-family asks for dual; make them agree/ });
  t.throws(() => labNetConfFrom({ file: v4, backend: 'host-gw' }), { message: /--net-conf has backend vxlan but --backend is host-gw/ });
  t.same(labNetConfFrom({ backend: 'host-gw', families: [6] }).families, [6], 'IPv6-only: the lab builds an IPv6-only underlay');
  // Each backend either runs dual-stack or is refused at once with the agent's own reason, naming the lab asked for.
  const dual = BACKEND_TYPES.map((b) => {
    try {
      return `${b}: ${ipFamilyName(labNetConfFrom({ backend: b, families: [4, 6] }).families)}`;
    } catch (err) {
      return `${b}: ${(err as Error).message}`;
    }
  });
  const agentReason = (b: BackendType): string => {
    try {
      checkBackendOptions(parseNetConf(JSON.stringify(labNetConf(b, [4, 6]))));
      return '';
    } catch (err) {
      return (err as Error).message;
    }
  };
  t.same(dual, BACKEND_TYPES.map((b) => (agentReason(b) ? `${b}: the agent refuses a dual-stack ${b} lab (${agentReason(b)}); choose another --ip-family or --backend` : `${b}: dual`)));
  t.throws(() => labNetConfFrom({ backend: 'ovs' }), { message: /^unknown backend "ovs"/ });
});

t.test('addresses per family: the primary field holds the first family, ipv6 the IPv6 one', async (t) => {
  const dual = { ip: '10.244.1.2', ipv6: '2001:db8:1000:1::2' };
  const v6only = { ip: '2001:db8:1000:1::2', ipv6: '2001:db8:1000:1::2' };
  t.same([podAddress(dual, 4), podAddress(dual, 6), podAddress(v6only, 4), podAddress({ ip: '10.244.1.2' }, 6)], ['10.244.1.2', '2001:db8:1000:1::2', undefined, undefined]);
  const node = { underlayIP: '192.0.2.11', underlayIPv6: '2001:db8::11', subnet: '10.244.1.0/24', ipv6Subnet: '2001:db8:1000:1::/64' };
  t.same([nodeUnderlayIP(node, 4), nodeUnderlayIP(node, 6), nodeSubnet(node, 4), nodeSubnet(node, 6)], ['192.0.2.11', '2001:db8::11', '10.244.1.0/24', '2001:db8:1000:1::/64']);
});

t.test('ping matrices: one per family, in the order asked; a pod without an address in a family fails there', async (t) => {
  // No pod has an address, so no ping runs: what is left is the grouping.
  const pods = [
    { name: 'n1-p1', ns: 'wl-none-n1-p1', ip: '' },
    { name: 'n2-p1', ns: 'wl-none-n2-p1', ip: '' },
  ];
  const matrices = await pingMatrices(pods, [4, 6]);
  t.same(matrices, [
    { family: 4, ok: false, rows: [{ from: 'n1-p1', to: 'n2-p1', ip: '', ok: false }, { from: 'n2-p1', to: 'n1-p1', ip: '', ok: false }] },
    { family: 6, ok: false, rows: [{ from: 'n1-p1', to: 'n2-p1', ip: '', ok: false }, { from: 'n2-p1', to: 'n1-p1', ip: '', ok: false }] },
  ]);
});

t.test('pods use the weft CNI plugin, its state in the node dir', async (t) => {
  const conf = weftConf('/tmp/x/n1');
  t.match(conf, { type: 'weft', name: 'weft', subnetFile: '/tmp/x/n1/subnet.env', dataDir: '/tmp/x/n1/cni' });
  t.same(conf.delegate, { ipMasq: false, ipam: { dataDir: '/tmp/x/n1/weft-ipam' } }, 'no NAT between pods; weft-ipam state per node');
});

t.test('ping matrix text', async (t) => {
  const text = formatPingMatrix({
    family: 4,
    ok: false,
    rows: [
      { from: 'n1-p1', to: 'n2-p1', ip: '10.0.2.2', ok: true },
      { from: 'n2-p1', to: 'n1-p1', ip: '10.0.1.2', ok: false },
    ],
  });
  const lines = text.split('\n');
  t.match(lines[0], /^IPv4\s+n1-p1\s+n2-p1$/, 'the corner names the family');
  t.match(lines[1], /^n1-p1\s+\.\s+ok$/);
  t.match(lines[2], /^n2-p1\s+--\s+\.$/);
  t.equal(lines[3], '1/2 pod pairs reachable over IPv4');
  const v6 = formatPingMatrix({ family: 6, ok: true, rows: [{ from: 'n1-p1', to: 'n2-p1', ip: '2001:db8:1000:2::2', ok: true }] }).split('\n');
  t.same([v6[0]?.split(/\s+/)[0], v6.at(-1)], ['IPv6', '1/1 pod pairs reachable over IPv6']);
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
    family: 4,
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
  t.match(md, /^## weft bench: host-gw \(flat topology, IPv4\)\n\niperf3 TCP pod to pod over IPv4 /);
  t.match(formatMarkdown({ ...r, family: 6 }), /^## weft bench: host-gw \(flat topology, IPv6\)\n\niperf3 TCP pod to pod over IPv6 /, 'an IPv6 result says so');
});

t.test('bench plans: each backend against its hand-built equal', async (t) => {
  const labels = (p: ReturnType<typeof benchPlan>): string[] => [p.subject.label, ...p.baselines.map((b) => b.label)];
  t.same(labels(benchPlan('host-gw')), ['weft host-gw', 'hand-built routes']);
  t.same(labels(benchPlan('vxlan')), ['weft vxlan', 'hand-built vxlan', 'weft host-gw'], 'flat vxlan: the tunnel by hand, and no tunnel at all');
  const routed = benchPlan('vxlan', undefined, 'routed');
  t.same(labels(routed), ['weft vxlan', 'hand-built vxlan'], 'routed vxlan: host-gw cannot cross the router');
  t.match(routed.notes.join(), /host-gw cannot reach a node behind a router/, 'the report says why host-gw is missing');
  t.throws(() => benchPlan('host-gw', undefined, 'routed'), /host-gw cannot reach a node behind a router/);
  t.same(labels(benchPlan('vxlan', undefined, 'flat', [4, 6])), labels(benchPlan('vxlan')), 'dual-stack labs: the same equals, built in both families');
});
