// The comparison's SVG charts: well-formed, one bar per variant and metric,
// the reference marked, labels and units present and escaped.
import t from 'tap';
import { analyse } from '../../src/bench/compare/analyse.js';
import { compareCharts, niceTicks, renderGroupedBars, wrapWords, type BarChartSpec } from '../../src/bench/compare/svg.js';
import { sampleRaw, sampleVariant } from './support/compare-sample.js';

/** Problems that make `xml` not well-formed: unbalanced or crossed tags, bare ampersands or angle brackets, unquoted attributes. */
function xmlProblems(xml: string): string[] {
  const problems: string[] = [];
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>|<\?xml[^>]*\?>|<!--[\s\S]*?-->/g;
  let last = 0;
  for (let m = tag.exec(xml); m; m = tag.exec(xml)) {
    const text = xml.slice(last, m.index);
    if (/[<>]|&(?!(?:amp|lt|gt|quot|apos|#\d+);)/.test(text)) problems.push(`bad character data: ${text.slice(0, 40)}`);
    last = tag.lastIndex;
    const [, close, name, , selfClose] = m;
    if (!name) continue;
    if (close) {
      const open = stack.pop();
      if (open !== name) problems.push(`</${name}> closes <${open}>`);
    } else if (!selfClose) stack.push(name);
  }
  if (/[<>]/.test(xml.slice(last).trim())) problems.push('a tag the checker could not read');
  if (stack.length) problems.push(`unclosed: ${stack.join(', ')}`);
  return problems;
}

const bars = (svg: string): string[] => [...svg.matchAll(/<rect class="bar" data-variant="([^"]+)" data-metric="([^"]+)"/g)].map((m) => `${m[1]}/${m[2]}`);

const charts = compareCharts(analyse(sampleRaw()));
const chart = (name: string): string => charts.find((c) => c.name === name)!.svg;
const VARIANTS = ['bare', 'host-gw', 'hand-routes', 'vxlan', 'hand-vxlan', 'udp', 'bgp'];
const expected = (metrics: string[]): string[] => VARIANTS.flatMap((v) => metrics.map((m) => `${v}/${m}`));

t.test('the checker itself', async (t) => {
  t.same([xmlProblems('<a><b/></a>'), xmlProblems('<a><b></a></b>').length > 0, xmlProblems('<a>x & y</a>').length], [[], true, 1], 'it tells well-formed from not');
});

t.test('three charts', async (t) => {
  t.same(charts.map((c) => c.name), ['bandwidth', 'latency', 'cpu'], 'bandwidth, latency and CPU');
  t.same(charts.map((c) => xmlProblems(c.svg)), [[], [], []], 'each is well-formed XML');
  t.same(charts.map((c) => c.svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')), [true, true, true], 'each is a standalone SVG document');
});

t.test('bandwidth chart', async (t) => {
  const svg = chart('bandwidth');
  t.same(bars(svg), expected(['tcp1.gbps', 'tcp4.gbps', 'udp.gbps']), 'a bar per variant per metric, bare first');
  t.equal([...svg.matchAll(/class="whisker"/g)].length, 21, 'a min–max whisker per bar');
  t.same([...svg.matchAll(/>(TCP, 1 stream|TCP, 4 streams|UDP received)</g)].map((m) => m[1]), ['TCP, 1 stream', 'TCP, 4 streams', 'UDP received'], 'a legend entry per metric');
  t.match(svg, /class="unit"[^>]*>Gbit\/s</, 'the y axis names its unit');
  t.same([...svg.matchAll(/<tspan[^>]*>([^<]+)</g)].map((m) => m[1]).join(' '), 'bare underlay weft host-gw hand-built routes weft vxlan hand-built vxlan weft udp weft bgp', 'every variant labelled, long names wrapped');
  t.same([...svg.matchAll(/class="reference-(band|label|line)"/g)].map((m) => m[1]), ['band', 'label', 'line', 'line', 'line'], 'bare shaded and labelled, a dashed line per metric');
  t.match(svg, /<text class="reference-label"[^>]*>reference</, 'the reference is labelled as such');
  t.match(svg, /<title>weft vxlan, TCP, 1 stream: 8 Gbit\/s \(7\.76–8\.24\)<\/title>/, 'each bar tells its figure on hover');
});

t.test('latency and CPU charts', async (t) => {
  t.same(bars(chart('latency')), expected(['ping.idle.p50Ms', 'ping.idle.p99Ms', 'ping.loaded.p50Ms', 'ping.loaded.p99Ms']), 'latency: idle and loaded p50 and p99');
  t.match(chart('latency'), /class="unit"[^>]*>ms</, 'latency in ms');
  t.same(bars(chart('cpu')), expected(['tcp1.cpuPerGbit', 'tcp1.softirqPerGbit', 'tcp4.cpuPerGbit', 'tcp4.softirqPerGbit']), 'CPU: system-wide and softirq, 1 and 4 streams');
  t.match(chart('cpu'), /class="unit"[^>]*>CPU s\/Gbit</, 'CPU in CPU s/Gbit');
});

t.test('marks and edge cases', async (t) => {
  const raw = sampleRaw(['bare', 'vxlan']);
  raw.variants[1] = sampleVariant('vxlan', { 'tcp1.gbps': 0.2 });
  const svg = compareCharts(analyse(raw))[0]!.svg;
  t.same([[...svg.matchAll(/class="noisy"/g)].length, /spread over 10%/.test(svg)], [1, true], 'a noisy figure is starred and the star explained');
  t.notMatch(chart('bandwidth'), /spread over 10%/, 'no star, no explanation');
  const spec: BarChartSpec = {
    title: 'a <b> & "c"',
    unit: 'µs & more',
    series: [{ key: 'm<1>', label: 'x < y' }],
    groups: [
      { key: 'a&b', label: 'a & b', values: [{ median: 2, min: 1, max: 3 }] },
      { key: 'gone', label: 'no figure', values: [undefined] },
    ],
  };
  const odd = renderGroupedBars(spec);
  t.same(xmlProblems(odd), [], 'text and attributes are escaped');
  t.match(odd, /<title>a &lt;b&gt; &amp; &quot;c&quot;<\/title>/, 'the title escaped');
  t.same([bars(odd), /class="missing"[^>]*>n\/a</.test(odd)], [['a&amp;b/m&lt;1&gt;'], true], 'a missing figure is n/a, not a bar');
  t.notMatch(odd, /reference/, 'no reference marks without a reference group');
  const single = renderGroupedBars({ ...spec, title: 'a title far longer than the two groups of one bar below it need', groups: [spec.groups[0]!, { ...spec.groups[0]!, key: 'one', values: [{ median: 2, min: 2, max: 2 }] }] });
  t.same([...single.matchAll(/class="whisker"/g)].length, 1, 'a figure without a range has no whisker');
  t.notMatch(renderGroupedBars({ ...spec, groups: [{ ...spec.groups[0]!, values: [{ median: 2, min: 2, max: 2 }] }] }), /min–max/, 'no whisker, no whisker in the legend');
  t.ok(Number(/width="(\d+)"/.exec(single)![1]) > 78 + 63 * 17 * 0.58, 'a long title widens the chart');
});

t.test('helpers', async (t) => {
  t.same(niceTicks(24.7), [0, 5, 10, 15, 20, 25], 'ticks of 1, 2 or 5 × 10^k past the maximum');
  t.same(niceTicks(0.44), [0, 0.1, 0.2, 0.3, 0.4, 0.5], 'small values');
  t.same(niceTicks(0), [0, 1], 'nothing to scale');
  t.same(wrapWords('hand-built routes', 12), ['hand-built', 'routes'], 'wrapped at word boundaries');
});
