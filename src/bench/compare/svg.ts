// The comparison's charts as SVG, written by weft itself: three grouped bar
// charts do not justify a charting library, its dependencies and its supply
// chain, and plain SVG text is easy to test (count the bars) and opens in
// any browser. One group per variant, one bar per metric, min–max whiskers,
// the bare underlay shaded as the reference with a dashed line at its value
// per metric across the plot.
import { METRICS, type CompareResult, type MetricKey, type VariantResult } from './types.js';

export interface BarValue {
  median: number;
  min: number;
  max: number;
  noisy?: boolean;
}

export interface BarChartSpec {
  title: string;
  /** Under the title, e.g. "higher is better". */
  subtitle?: string;
  /** The y axis unit. */
  unit: string;
  /** One bar per series in every group, in this order; `key` becomes data-metric. */
  series: { key: string; label: string }[];
  /** `values[i]` belongs to `series[i]`; undefined where the figure is missing. `key` becomes data-variant. */
  groups: { key: string; label: string; reference?: boolean; values: (BarValue | undefined)[] }[];
}

export interface Chart {
  name: 'bandwidth' | 'latency' | 'cpu';
  title: string;
  svg: string;
}

// Okabe–Ito colours: told apart with the common colour-vision deficiencies.
const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00'];
const FONT = 'font-family="Helvetica, Arial, sans-serif"';
const BAR = 18;
const GROUP_GAP = 30;
const LEFT = 78;
const RIGHT = 24;
const PLOT_HEIGHT = 260;
const CHAR = 0.58; // average glyph width per font-size unit, for layout only

export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

const textWidth = (text: string, size: number): number => text.length * size * CHAR;
const fmt = (n: number): string => (Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(4))));

/** Words into lines of at most `chars` characters (a longer word stands alone). */
export function wrapWords(text: string, chars: number): string[] {
  const lines: string[] = [];
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const last = lines.at(-1);
    if (last !== undefined && `${last} ${word}`.length <= chars) lines[lines.length - 1] = `${last} ${word}`;
    else lines.push(word);
  }
  return lines;
}

/** Axis ticks from 0 past `max` in steps of 1, 2 or 5 × 10^k, about five of them. */
export function niceTicks(max: number): number[] {
  if (!(max > 0)) return [0, 1];
  const rough = max / 5;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough)!;
  const ticks: number[] = [];
  for (let i = 0; ticks.at(-1) === undefined || ticks.at(-1)! < max; i++) ticks.push(Number((i * step).toPrecision(12)));
  return ticks;
}

/** A grouped bar chart as a standalone SVG document. */
export function renderGroupedBars(spec: BarChartSpec): string {
  const n = spec.series.length;
  // Wide enough for the bars and for the title; spare width widens each group's slot.
  const titleWidth = Math.max(textWidth(spec.title, 17) * 1.1, textWidth(spec.subtitle ?? '', 12));
  const plotWidth = Math.max(spec.groups.length * (n * BAR + GROUP_GAP), 360, Math.ceil(titleWidth));
  const groupWidth = plotWidth / Math.max(1, spec.groups.length);
  const width = LEFT + plotWidth + RIGHT;
  const color = (i: number): string => PALETTE[i % PALETTE.length]!;

  // Legend: series swatches, then the whisker and the reference line, wrapped into rows.
  const legendItems = [
    ...spec.series.map((s, i) => ({ label: s.label, mark: `<rect x="0" y="-9" width="12" height="12" fill="${color(i)}"/>` })),
    ...(spec.groups.some((g) => g.values.some((v) => v && v.max > v.min)) ? [{ label: 'min–max over repetitions', mark: '<path d="M6 -10 V4 M2 -10 H10 M2 4 H10" stroke="#333" stroke-width="1.2" fill="none"/>' }] : []),
    ...(spec.groups.some((g) => g.reference) ? [{ label: 'bare underlay (reference), per metric', mark: '<path d="M0 -3 H14" stroke="#555" stroke-width="1.5" stroke-dasharray="4 3"/>' }] : []),
    ...(spec.groups.some((g) => g.values.some((v) => v?.noisy)) ? [{ label: 'spread over 10%', mark: '<text x="2" y="4" font-size="14" font-weight="bold">*</text>' }] : []),
  ];
  const legendRows: { x: number; item: (typeof legendItems)[number] }[][] = [[]];
  let lx = 0;
  for (const item of legendItems) {
    const w = 20 + textWidth(item.label, 12) + 18;
    if (lx > 0 && lx + w > width - LEFT - RIGHT) {
      legendRows.push([]);
      lx = 0;
    }
    legendRows.at(-1)!.push({ x: lx, item });
    lx += w;
  }
  const legendTop = spec.subtitle ? 66 : 50;
  const plotTop = legendTop + legendRows.length * 20 + 22;
  const plotBottom = plotTop + PLOT_HEIGHT;

  const labelChars = Math.max(6, Math.floor(groupWidth / (12 * CHAR)));
  const labels = spec.groups.map((g) => wrapWords(g.label, labelChars));
  const labelLines = Math.max(1, ...labels.map((l) => l.length));
  const height = plotBottom + 16 + labelLines * 15 + 16;

  const peaks = spec.groups.flatMap((g) => g.values.flatMap((v) => (v ? [v.max, v.median] : []))).filter(Number.isFinite);
  const ticks = niceTicks(Math.max(0, ...peaks));
  const top = ticks.at(-1)!;
  const y = (v: number): number => plotBottom - (Math.max(0, v) / top) * PLOT_HEIGHT;
  const px = (v: number): string => v.toFixed(1);

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(spec.title)}" ${FONT} font-size="12" fill="#222">`,
    `<title>${escapeXml(spec.title)}</title>`,
    `<rect class="background" x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text class="title" x="${LEFT}" y="28" font-size="17" font-weight="bold">${escapeXml(spec.title)}</text>`,
  );
  if (spec.subtitle) out.push(`<text class="subtitle" x="${LEFT}" y="48" font-size="12" fill="#555">${escapeXml(spec.subtitle)}</text>`);

  out.push(`<g class="legend" transform="translate(${LEFT} ${legendTop})">`);
  legendRows.forEach((row, r) =>
    row.forEach(({ x, item }) => out.push(`<g transform="translate(${px(x)} ${r * 20})">${item.mark}<text x="20" y="1">${escapeXml(item.label)}</text></g>`)),
  );
  out.push('</g>');

  // Reference groups shaded behind everything, labelled above the plot.
  spec.groups.forEach((g, gi) => {
    if (!g.reference) return;
    const x0 = LEFT + gi * groupWidth + 4;
    out.push(
      `<rect class="reference-band" x="${px(x0)}" y="${plotTop}" width="${px(groupWidth - 8)}" height="${PLOT_HEIGHT}" fill="#eeeeee"/>`,
      `<text class="reference-label" x="${px(x0 + (groupWidth - 8) / 2)}" y="${plotTop - 6}" text-anchor="middle" font-size="11" fill="#555">reference</text>`,
    );
  });

  // Y axis: grid lines, ticks, the unit.
  out.push('<g class="y-axis">');
  for (const t of ticks) {
    out.push(
      `<line x1="${LEFT}" x2="${LEFT + plotWidth}" y1="${px(y(t))}" y2="${px(y(t))}" stroke="${t === 0 ? '#333' : '#dddddd'}" stroke-width="1"/>`,
      `<line x1="${LEFT - 5}" x2="${LEFT}" y1="${px(y(t))}" y2="${px(y(t))}" stroke="#333"/>`,
      `<text x="${LEFT - 8}" y="${px(y(t) + 4)}" text-anchor="end">${escapeXml(fmt(t))}</text>`,
    );
  }
  out.push(
    `<line x1="${LEFT}" x2="${LEFT}" y1="${plotTop}" y2="${plotBottom}" stroke="#333"/>`,
    `<text class="unit" transform="translate(18 ${px(plotTop + PLOT_HEIGHT / 2)}) rotate(-90)" text-anchor="middle" font-size="13">${escapeXml(spec.unit)}</text>`,
    '</g>',
  );

  // Bars with whiskers, the noisy marker, the variant labels.
  spec.groups.forEach((g, gi) => {
    const gx = LEFT + gi * groupWidth + (groupWidth - n * BAR) / 2;
    out.push(`<g class="group" data-variant="${escapeXml(g.key)}">`);
    g.values.forEach((v, si) => {
      const x = gx + si * BAR;
      const s = spec.series[si]!;
      if (!v || !Number.isFinite(v.median)) {
        out.push(`<text class="missing" x="${px(x + BAR / 2)}" y="${plotBottom - 4}" text-anchor="middle" font-size="9" fill="#888">n/a</text>`);
        return;
      }
      // One repetition, or all alike, has no range to draw.
      const range = Number.isFinite(v.min) && Number.isFinite(v.max) && v.max > v.min ? ` (${fmt(v.min)}–${fmt(v.max)})` : '';
      out.push(
        `<rect class="bar" data-variant="${escapeXml(g.key)}" data-metric="${escapeXml(s.key)}" x="${px(x + 1)}" y="${px(y(v.median))}" width="${BAR - 2}" height="${px(plotBottom - y(v.median))}" fill="${color(si)}">` +
          `<title>${escapeXml(`${g.label}, ${s.label}: ${fmt(v.median)} ${spec.unit}${range}`)}</title></rect>`,
      );
      if (range) {
        const cx = x + BAR / 2;
        out.push(`<path class="whisker" d="M${px(cx)} ${px(y(v.min))} V${px(y(v.max))} M${px(cx - 4)} ${px(y(v.min))} H${px(cx + 4)} M${px(cx - 4)} ${px(y(v.max))} H${px(cx + 4)}" stroke="#333" stroke-width="1.2" fill="none"/>`);
      }
      if (v.noisy) out.push(`<text class="noisy" x="${px(x + BAR / 2)}" y="${px(y(Math.max(v.max, v.median)) - 4)}" text-anchor="middle" font-size="14" font-weight="bold">*</text>`);
    });
    const lines = labels[gi]!;
    out.push(
      `<text class="variant-label" x="${px(LEFT + gi * groupWidth + groupWidth / 2)}" y="${plotBottom + 18}" text-anchor="middle" font-size="12"${g.reference ? ' font-weight="bold"' : ''}>` +
        lines.map((l, i) => `<tspan x="${px(LEFT + gi * groupWidth + groupWidth / 2)}" dy="${i === 0 ? 0 : 15}">${escapeXml(l)}</tspan>`).join('') +
        '</text>',
      '</g>',
    );
  });

  // The reference's value per metric, dashed across the plot.
  const reference = spec.groups.find((g) => g.reference);
  reference?.values.forEach((v, si) => {
    if (!v || !Number.isFinite(v.median)) return;
    out.push(
      `<line class="reference-line" data-metric="${escapeXml(spec.series[si]!.key)}" x1="${LEFT}" x2="${LEFT + plotWidth}" y1="${px(y(v.median))}" y2="${px(y(v.median))}" stroke="${color(si)}" stroke-width="1.5" stroke-dasharray="5 4" opacity="0.85"/>`,
    );
  });

  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Groups in the result's order with the bare underlay first. */
function groupsOf(r: CompareResult, keys: readonly MetricKey[]): BarChartSpec['groups'] {
  const ordered: VariantResult[] = [...r.variants.filter((v) => v.kind === 'bare'), ...r.variants.filter((v) => v.kind !== 'bare')];
  return ordered.map((v) => ({
    key: v.key,
    label: v.label,
    reference: v.kind === 'bare',
    values: keys.map((k) => {
      const s = v.stats[k];
      return s && s.n > 0 ? { median: s.median, min: s.min, max: s.max, noisy: s.noisy } : undefined;
    }),
  }));
}

const CHARTS: { name: Chart['name']; title: string; subtitle: string; unit: string; series: { key: MetricKey; label: string }[] }[] = [
  {
    name: 'bandwidth',
    title: 'Bandwidth: pod to pod (bare underlay: node to node)',
    subtitle: 'median over the repetitions; higher is better',
    unit: METRICS['tcp1.gbps'].unit,
    series: [
      { key: 'tcp1.gbps', label: 'TCP, 1 stream' },
      { key: 'tcp4.gbps', label: 'TCP, 4 streams' },
      { key: 'udp.gbps', label: 'UDP received' },
    ],
  },
  {
    name: 'latency',
    title: 'Latency: ping round trip, idle and under TCP load',
    subtitle: 'median over the repetitions; lower is better',
    unit: METRICS['ping.idle.p50Ms'].unit,
    series: [
      { key: 'ping.idle.p50Ms', label: 'idle p50' },
      { key: 'ping.idle.p99Ms', label: 'idle p99' },
      { key: 'ping.loaded.p50Ms', label: 'under load p50' },
      { key: 'ping.loaded.p99Ms', label: 'under load p99' },
    ],
  },
  {
    name: 'cpu',
    title: 'CPU per Gbit received: system-wide and softirq',
    subtitle: 'CPU seconds (all cores) per Gbit; median over the repetitions; lower is better',
    unit: METRICS['tcp1.cpuPerGbit'].unit,
    series: [
      { key: 'tcp1.cpuPerGbit', label: 'TCP 1 stream, all CPU' },
      { key: 'tcp1.softirqPerGbit', label: 'TCP 1 stream, softirq' },
      { key: 'tcp4.cpuPerGbit', label: 'TCP 4 streams, all CPU' },
      { key: 'tcp4.softirqPerGbit', label: 'TCP 4 streams, softirq' },
    ],
  },
];

/** The bandwidth, latency and CPU charts of a comparison. */
export function compareCharts(r: CompareResult): Chart[] {
  return CHARTS.map((c) => ({
    name: c.name,
    title: c.title,
    svg: renderGroupedBars({ title: c.title, subtitle: c.subtitle, unit: c.unit, series: c.series, groups: groupsOf(r, c.series.map((s) => s.key)) }),
  }));
}
