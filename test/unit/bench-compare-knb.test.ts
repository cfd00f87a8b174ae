// The comparison's JSON: knb's layout per variant, every figure under weft,
// and the schema that describes it.
import t from 'tap';
import { analyse } from '../../src/bench/compare/analyse.js';
import { COMPARE_JSON_SCHEMA, VALIDATED_KEYWORDS, toCompareJson, validateCompareJson } from '../../src/bench/compare/knb.js';
import { sampleRaw } from './support/compare-sample.js';

// The document as a reader gets it from the file.
const doc = JSON.parse(JSON.stringify(toCompareJson(analyse(sampleRaw())))) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
const variant = (key: string): any => doc.variants.find((v: any) => v.metadata.variant === key); // eslint-disable-line @typescript-eslint/no-explicit-any

t.test('knb layout', async (t) => {
  t.same(Object.keys(doc), ['metadata', 'variants', 'weft'], 'metadata, variants, weft');
  t.same(
    Object.keys(variant('vxlan').metadata).slice(0, 7),
    ['name', 'generator', 'version', 'date', 'server-node', 'client-node', 'socket-buffer-size'],
    "each variant carries knb's metadata fields",
  );
  t.equal(variant('vxlan').metadata.date, '2026-12-02 07:00:00', "knb's date format");
  t.same([variant('bare').data.node2node.tcp.bandwidth, variant('bare').data.pod2pod], [22000, undefined], 'the bare underlay is node2node, in Mbit/s');
  t.same([variant('vxlan').data.pod2pod.tcp.bandwidth, variant('vxlan').data.pod2pod.udp.bandwidth], [8000, 2600], 'a backend is pod2pod, TCP one stream and UDP received');
  t.equal(variant('vxlan').data.pod2pod.tcp.client.cpu.total, 52, 'CPU in % of the host: 0.13 CPU s/Gbit × 8 Gbit/s over 2 cores');
  t.same(variant('vxlan').data.pod2pod.tcp.client, variant('vxlan').data.pod2pod.tcp.server, 'client and server carry the same host-wide figures');
  t.equal(variant('vxlan').data.pod2pod.tcp.client.cpu.system, null, 'a CPU split weft does not measure is null');
  t.equal(variant('vxlan').data.pod2pod.tcp.client.ram, 1900, 'RAM is the host memory used, MiB');
  t.same([variant('vxlan').data.mtu, variant('vxlan').data.kernel], ['1450', '6.18.44'], 'MTU as knb writes it (a string), the host kernel');
  t.match(doc.metadata['shared-host'], /network namespaces on one host kernel.*host-wide/, 'the metadata says client and server share one host');
});

t.test('weft figures', async (t) => {
  const fig = doc.weft.variants.vxlan.figures['tcp1.gbps'];
  t.same(
    fig,
    { unit: 'Gbit/s', better: 'higher', median: 8, min: 8 * 0.97, max: 8 * 1.03, n: 3, spread: fig.spread, noisy: false, ratioToBare: 8 / 22, ratioToEqual: 8 / 8.2 },
    'median, min, max, noisy and both ratios',
  );
  t.equal(doc.weft.variants.vxlan.figures['tcp1.retransmits'].spread, null, 'a spread that is not a number is null');
  t.equal(doc.weft.variants.bare.figures['tcp1.gbps'].ratioToBare, null, 'no ratio is null');
  t.equal(doc.weft.cpuOrdering.summary, 'host-gw ≈ bgp < vxlan < udp: matches the classic ordering host-gw < bgp < vxlan < udp', 'the CPU ordering');
});

t.test('schema and validator', async (t) => {
  t.same(validateCompareJson(doc), [], 'the document fits its schema');
  t.equal(COMPARE_JSON_SCHEMA.$schema, 'https://json-schema.org/draft/2020-12/schema', 'draft 2020-12');
  const keywords = new Set<string>();
  // Keys of schema objects are keywords, except under properties and $defs, whose values are schemas.
  const walk = (s: unknown): void => {
    if (!s || typeof s !== 'object') return;
    for (const [k, v] of Object.entries(s)) {
      keywords.add(k);
      if (k === 'properties' || k === '$defs') Object.values(v as object).forEach(walk);
      else if (typeof v === 'object' && !Array.isArray(v) && k !== 'const') walk(v);
    }
  };
  walk(COMPARE_JSON_SCHEMA);
  const annotations = ['$schema', '$id', 'title', 'description', '$defs'];
  t.same([...keywords].filter((k) => !(VALIDATED_KEYWORDS as readonly string[]).includes(k) && !annotations.includes(k)), [], 'the schema uses only keywords the validator checks');
  const broken = JSON.parse(JSON.stringify(doc));
  delete broken.variants[1].data.pod2pod.tcp.bandwidth;
  broken.variants[0].data.mtu = 1500;
  broken.weft.variants.vxlan.figures['tcp9.gbps'] = broken.weft.variants.vxlan.figures['tcp1.gbps'];
  broken.weft.variants.vxlan.figures['tcp1.gbps'].noisy = 'no';
  t.same(
    validateCompareJson(broken),
    [
      '$.variants[0].data.mtu: expected string, found integer',
      '$.variants[1].data.pod2pod.tcp: missing bandwidth',
      '$.weft.variants.vxlan.figures.tcp1.gbps.noisy: expected boolean, found string',
      '$.weft.variants.vxlan.figures.tcp9.gbps (name): "tcp9.gbps" is not one of "tcp1.gbps", "tcp1.retransmits", "tcp1.cpuPerGbit", "tcp1.softirqPerGbit", "tcp1.agentCpuPerGbit", "tcp4.gbps", "tcp4.retransmits", "tcp4.cpuPerGbit", "tcp4.softirqPerGbit", "udp.gbps", "udp.lossPercent", "udp.jitterMs", "udp.cpuPerGbit", "udp.softirqPerGbit", "ping.idle.p50Ms", "ping.idle.p99Ms", "ping.loaded.p50Ms", "ping.loaded.p99Ms", "rr.perSecond", "rr.p50Us", "rr.p99Us", "mem.agentRssMiB", "mem.birdRssMiB", "mem.hostUsedMiB"',
      '$.weft.variants.vxlan.figures.tcp9.gbps.noisy: expected boolean, found string',
    ],
    'each problem names where it is and what is wrong',
  );
  t.same(validateCompareJson({ metadata: {}, variants: [] }).slice(0, 2), ['$: missing weft', '$.metadata: missing name'], 'missing parts are named');
  t.same(validateCompareJson('{}'), ['$: expected object, found string'], 'not an object at all');
  t.same(validateCompareJson({ ...doc, extra: 1 }), ['$: unexpected property extra'], 'an unknown top-level property');
});
