// The comparison's Markdown report and the files a run writes.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { analyse } from '../../src/bench/compare/analyse.js';
import { validateCompareJson } from '../../src/bench/compare/knb.js';
import { formatCompareMarkdown, formatFigure } from '../../src/bench/compare/markdown.js';
import { writeCompareOutputs } from '../../src/bench/compare/write.js';
import { sampleRaw, sampleVariant } from './support/compare-sample.js';

const result = analyse(sampleRaw());
const md = formatCompareMarkdown(result, { bandwidth: 'compare-x-bandwidth.svg', latency: 'compare-x-latency.svg', cpu: 'compare-x-cpu.svg' });
const section = (title: string): string => md.split(/^## /m).find((s) => s.startsWith(title))!;

t.test('header', async (t) => {
  t.match(md, /^# weft bench compare\n\nRun 2026-12-02T07:00:00\.000Z to 2026-12-02T07:25:30\.000Z\. Host: 2 CPUs \(AMD EPYC 7B13\), kernel 6\.18\.44, 7940 MiB\./, 'date and host');
  t.match(md, /Options: backends host-gw, vxlan, udp, bgp; 3 repetitions of 10 s per figure after a 2 s warm-up/, 'options');
  t.match(md, /one host kernel, so CPU and memory figures are host-wide/, 'says client and server share the host');
});

t.test('tables', async (t) => {
  t.same(
    md.match(/^## .*$/gm),
    ['## Bandwidth (TCP)', '## UDP', '## Latency (ping)', '## Request/response (sockperf ping-pong)', '## CPU per Gbit', '## Memory', '## Notes', '## Charts', '## CPU ordering'],
    'one table per group, then notes, charts and the CPU ordering',
  );
  t.same(
    section('Bandwidth').match(/^\| [^|]+ \|/gm),
    ['| variant |', '| --- |', '| **bare underlay** |', '| weft host-gw |', '| hand-built routes |', '| weft vxlan |', '| hand-built vxlan |', '| weft udp |', '| weft bgp |'],
    'a row per variant, bare first and bold',
  );
  t.match(section('Bandwidth'), /\| weft vxlan \| 8\.00 \(7\.76–8\.24\) \| 0\.36 \/ 0\.98 \|/, 'median (min–max), then × bare / × equal');
  t.match(section('Bandwidth'), /\| \*\*bare underlay\*\* \| 22\.0 \(21\.3–22\.7\) \| reference \|/, 'the bare row is the reference');
  t.match(section('Bandwidth'), /\| hand-built vxlan \| 8\.20 \(7\.95–8\.45\) \| 0\.37 \/ – \|/, 'no equal for a hand-built variant');
  t.match(section('Memory'), /\n\| \*\*bare underlay\*\* \| – \| – \| – \| – \| 1900 \(1843–1957\) \| reference \|\n/, 'a figure a variant lacks is –, and so is its ratio');
  t.equal(legendCount(md), 6, 'the cell legend sits under every table');
  t.match(section('UDP'), /UDP datagram size: bare underlay 1472 B \(MTU 1500\), .*weft vxlan 1422 B \(MTU 1450\)/, 'the datagram size per variant');
  t.match(md, /× equal: weft host-gw against hand-built routes, weft vxlan against hand-built vxlan, weft udp against hand-built vxlan, weft bgp against hand-built routes\./, 'which equal each ratio is against');
});

function legendCount(text: string): number {
  return text.split('\n').filter((l) => l.startsWith('Cells: median (min–max) over the repetitions; † marks a spread')).length;
}

t.test('noisy marker, notes, charts', async (t) => {
  const noisy = formatCompareMarkdown(analyse({ ...sampleRaw(['bare']), variants: [sampleVariant('bare', { 'udp.gbps': 0.2 })] }));
  t.match(noisy, /\| \*\*bare underlay\*\* \| 6\.00 \(4\.80–7\.20\) † \|/, 'a noisy figure carries the marker');
  t.match(section('Notes'), /^Notes\n\n- the machine was shared with other work: figures are noisy\n/, "the run's notes");
  t.match(section('Charts'), /!\[bandwidth chart\]\(compare-x-bandwidth\.svg\)\n!\[latency chart\]\(compare-x-latency\.svg\)\n!\[cpu chart\]\(compare-x-cpu\.svg\)/, 'links to the charts by relative name');
  t.notMatch(formatCompareMarkdown(result), /## Charts/, 'no chart section without chart files');
  t.match(formatCompareMarkdown(analyse(sampleRaw(['vxlan', 'udp']))), /- classic: vxlan < udp \(host-gw < bgp < vxlan < udp, restricted to the backends measured\)\n/, 'the classic order restricted to what ran says so');
});

t.test('ends with the CPU ordering', async (t) => {
  t.match(
    md,
    /## CPU ordering\n\n.*\n\n- measured, cheapest first: host-gw, bgp, vxlan, udp\n- classic: host-gw < bgp < vxlan < udp\n- matches the classic ordering: yes\n\n\*\*host-gw ≈ bgp < vxlan < udp: matches the classic ordering host-gw < bgp < vxlan < udp\.\*\*\n$/,
    'measured order, classic order, whether it matches, last',
  );
});

t.test('figures', async (t) => {
  t.same([0.0005, 0.03, 8, 22, 45865.4, 0, Number.NaN].map(formatFigure), ['0.000500', '0.0300', '8.00', '22.0', '45865', '0', 'n/a'], 'three significant digits, integers from 100');
});

t.test('writeCompareOutputs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-compare-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = await writeCompareOutputs(result, join(dir, 'new'));
  const stem = join(dir, 'new', 'compare-2026-12-02T07-00-00-000Z');
  t.same(
    out,
    { json: `${stem}.json`, schema: `${stem}.schema.json`, markdown: `${stem}.md`, charts: [`${stem}-bandwidth.svg`, `${stem}-latency.svg`, `${stem}-cpu.svg`] },
    'paths named after the start, in a directory made for them',
  );
  t.same(readdirSync(join(dir, 'new')).length, 6, 'six files and nothing else');
  const doc = JSON.parse(readFileSync(out.json, 'utf8'));
  t.same([doc.$schema, validateCompareJson(doc)], ['compare-2026-12-02T07-00-00-000Z.schema.json', []], 'the JSON names its schema beside it and fits it');
  t.equal(JSON.parse(readFileSync(out.schema, 'utf8')).$schema, 'https://json-schema.org/draft/2020-12/schema', 'the schema file');
  t.match(readFileSync(out.markdown, 'utf8'), /!\[cpu chart\]\(compare-2026-12-02T07-00-00-000Z-cpu\.svg\)/, 'the report links the charts beside it');
  t.match(readFileSync(out.charts[0]!, 'utf8'), /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/, 'the charts are SVG');
});
