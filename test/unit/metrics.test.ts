// /metrics speaks the Prometheus text format: every family announced by HELP
// and TYPE before its samples, names and labels within Prometheus' rules,
// counters ending in _total, label values escaped. Checked on every family
// the agent exports, with the udp and bgp backends' families included.
import t from 'tap';
import { bgpMetrics } from '../../backends/bgp/metrics.js';
import { udpMetrics } from '../../backends/udp/metrics.js';
import type { UdpCounters } from '../../backends/udp/native.js';
import { nodeMetrics, renderMetrics, READINESS_PARTS, type AgentCounters } from '../../src/agent/metrics.js';

const counters: AgentCounters = {
  lease_renewals_total: 3, lease_reacquisitions_total: 0, program_total: 12,
  program_errors_total: 1, backend_switches_total: 2, config_refusals_total: 0,
};

/** A udp loop's counters: every numeric field 7, one drop per reason and direction. */
function udpCounters(): UdpCounters {
  const reasons = ['short', 'notPeer', 'spoofedSource', 'tooBig'];
  const drops = Object.fromEntries(reasons.map((r) => [r, 1]));
  const numeric = ['tunReads', 'tunRxPackets', 'tunRxBytes', 'udpTxDatagrams', 'udpTxBytes', 'udpRxDatagrams', 'udpRxBytes',
    'udpRxDelivered', 'tunTxBytes', 'udpRxKernelDrops', 'icmpUnreachable', 'icmpTimeExceeded', 'icmpTooBig', 'icmpRateLimited'];
  return { ...Object.fromEntries(numeric.map((k) => [k, 7])), dropsInbound: drops, dropsOutbound: drops } as unknown as UdpCounters;
}

const text = renderMetrics(nodeMetrics({
  failing: [{ part: 'routes', reason: 'a route to 10.244.3.0/24 exists that weft does not own' }],
  peers: 2,
  backend: 'udp',
  dataplane: { inSync: false, lastError: 'ip: "quoted" \\ and\nnewline', conflicts: ['10.244.3.0/24'], failures: [], missingLinks: [], runs: 9 },
  counters,
  etcdRequests: { range: 4, list: 1, txn: 2, lease_grant: 1, lease_revoke: 0, lease_ttl: 0, keepalive: 0, watch: 3 },
  extraFamilies: [
    ...udpMetrics(udpCounters()),
    ...bgpMetrics(2, [{ name: 'node_192_0_2_2', peer: '192.0.2.2', state: 'Established', protocolState: 'up', since: '', info: '', importedRoutes: 1, exportedRoutes: 1 }]),
  ],
}));

interface Family { help?: string; type?: string; samples: string[] }

/** Reads the text back as a scraper would; throws on a sample before its family's HELP/TYPE. */
function parse(body: string): Map<string, Family> {
  const families = new Map<string, Family>();
  for (const line of body.trimEnd().split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      const f = families.get(meta[2]!) ?? { samples: [] };
      if (meta[1] === 'HELP') f.help = meta[3]; else f.type = meta[3];
      families.set(meta[2]!, f);
      continue;
    }
    const sample = /^([^\s{]+)(\{.*\})? (\S+)$/.exec(line);
    if (!sample) throw new Error(`not a sample line: ${line}`);
    const family = families.get(sample[1]!);
    if (!family?.help || !family.type) throw new Error(`sample before HELP/TYPE: ${line}`);
    family.samples.push(line);
  }
  return families;
}

t.test('the agent\'s metrics text', async (t) => {
  const families = parse(text);
  const names = [...families.keys()];
  t.ok(names.length >= 20, `many families exported (${names.length})`);
  t.same(names.filter((n) => !families.get(n)!.help || !families.get(n)!.type), [], 'every family has HELP and TYPE lines');
  t.same(names.filter((n) => !/^weft_[a-z][a-z0-9_]*$/.test(n)), [], 'names are weft_-prefixed snake case (Prometheus naming)');
  t.same(names.filter((n) => families.get(n)!.type === 'counter' && !n.endsWith('_total')), [], 'counters end in _total');
  t.same(names.filter((n) => families.get(n)!.type === 'gauge' && n.endsWith('_total')), [], 'no gauge is named like a counter');
  t.same(names.filter((n) => !['counter', 'gauge'].includes(families.get(n)!.type!)), [], 'every TYPE is counter or gauge');
  t.match(text, /^weft_dataplane_last_error_info\{error="ip: \\"quoted\\" \\\\ and\\nnewline"\} 1$/m, 'label values are escaped');
  t.match(text, /^weft_part_failing\{part="routes"\} 1$/m, 'the failing part is counted by name');
  t.equal(families.get('weft_part_failing')!.samples.length, READINESS_PARTS.length, 'every readiness part has a sample');
  t.match(text, /^weft_udp_drops_total\{direction="inbound",reason="spoofedSource"\} 1$/m, 'udp drops by direction and reason');
  t.match(text, /^weft_bgp_session_established\{session="node_192_0_2_2",peer="192.0.2.2"\} 1$/m, 'bgp session state');
  t.match(text, /^weft_lease_renewals_total 3$/m, 'lease renewals');
  t.match(text, /^weft_backend_switches_total 2$/m, 'backend switches');
  t.same(families.get('weft_etcd_requests_total')!.samples.filter((l) => /call="(range|watch)"/.test(l)), ['weft_etcd_requests_total{call="range"} 4', 'weft_etcd_requests_total{call="watch"} 3'], 'etcd requests by call');
});

t.test('a bad family name is refused, not rendered', async (t) => {
  t.throws(() => renderMetrics([{ name: 'weft-bad', type: 'gauge', help: 'x', samples: [] }]), /bad or repeated metric name/);
  t.throws(() => renderMetrics([{ name: 'weft_x', type: 'gauge', help: 'x', samples: [{ labels: { 'bad-label': 'v' }, value: 1 }] }]), /bad label name/);
});
