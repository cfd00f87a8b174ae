// A comparison as a Markdown report: what ran, one table per group of
// figures, notes, the charts, and last the CPU ordering it measured set
// against the classic one (the question the comparison exists to answer).
import { METRICS, SPREAD_FLAG, VARIANT_LABEL, type CompareResult, type MetricKey, type Stat, type VariantResult } from './types.js';
import { CLASSIC_CPU_ORDER } from './analyse.js';
import type { Chart } from './svg.js';

/** Marks a figure whose spread is over SPREAD_FLAG. */
export const NOISY_MARK = '†';

const GROUPS: { title: string; metrics: MetricKey[]; about?: string }[] = [
  { title: 'Bandwidth (TCP)', metrics: ['tcp1.gbps', 'tcp4.gbps', 'tcp1.retransmits', 'tcp4.retransmits'], about: 'iperf3 TCP, received rate; retransmitted segments per run.' },
  {
    title: 'UDP',
    metrics: ['udp.gbps', 'udp.lossPercent', 'udp.jitterMs', 'udp.cpuPerGbit', 'udp.softirqPerGbit'],
    about: 'iperf3 -u at the highest rate the sender reaches, datagrams sized to fit the MTU; the rate is what arrived, CPU per Gbit as in the CPU table.',
  },
  { title: 'Latency (ping)', metrics: ['ping.idle.p50Ms', 'ping.idle.p99Ms', 'ping.loaded.p50Ms', 'ping.loaded.p99Ms'], about: 'ping round-trip time percentiles, idle and under a concurrent TCP stream.' },
  { title: 'Request/response (sockperf ping-pong)', metrics: ['rr.perSecond', 'rr.p50Us', 'rr.p99Us'], about: 'one message in flight at a time, so the rate is round trips per second; round-trip percentiles.' },
  {
    title: 'CPU per Gbit',
    metrics: ['tcp1.cpuPerGbit', 'tcp1.softirqPerGbit', 'tcp1.agentCpuPerGbit', 'tcp4.cpuPerGbit', 'tcp4.softirqPerGbit'],
    about: 'CPU seconds per Gbit received during the TCP runs: all non-idle CPU of the host (/proc/stat, every core), its softirq part, and the agents\' own utime+stime (UDP\'s are in the UDP table).',
  },
  { title: 'Memory', metrics: ['mem.agentRssMiB', 'mem.birdRssMiB', 'mem.hostUsedMiB'], about: 'resident set of one agent and one BIRD, and the host\'s used memory during the run.' },
];

/** A figure with about three significant digits, never in exponent form for the sizes a benchmark yields. */
export function formatFigure(n: number): string {
  if (!Number.isFinite(n)) return 'n/a';
  if (Math.abs(n) >= 100 || n === 0) return String(Math.round(n));
  return n.toPrecision(3);
}

const cell = (s: Stat | undefined): string =>
  !s || s.n === 0 ? '–' : `${formatFigure(s.median)} (${formatFigure(s.min)}–${formatFigure(s.max)})${s.noisy ? ` ${NOISY_MARK}` : ''}`;

const ratioCell = (v: VariantResult, key: MetricKey): string => {
  const r = (x: number | undefined): string => (x !== undefined && Number.isFinite(x) ? x.toFixed(2) : '–');
  if (!v.stats[key]) return '–';
  if (v.kind === 'bare') return 'reference';
  return `${r(v.ratioToBare[key])} / ${r(v.ratioToEqual[key])}`;
};

function table(r: CompareResult, metrics: MetricKey[]): string[] {
  const present = metrics.filter((m) => r.variants.some((v) => v.stats[m] && v.stats[m]!.n > 0));
  if (!present.length) return [];
  const head = ['variant', ...present.flatMap((m) => [`${METRICS[m].label} (${METRICS[m].unit})`, '× bare / × equal'])];
  const align = ['---', ...present.flatMap(() => ['---:', '---:'])];
  const rows = r.variants.map((v) => [v.kind === 'bare' ? `**${v.label}**` : v.label, ...present.flatMap((m) => [cell(v.stats[m]), ratioCell(v, m)])]);
  return [head, align, ...rows].map((cells) => `| ${cells.join(' | ')} |`);
}

function equalsLine(r: CompareResult): string {
  const pairs = r.variants.filter((v) => v.kind === 'weft' && v.equal).map((v) => `${v.label} against ${VARIANT_LABEL[v.equal!]}`);
  return pairs.length ? ` × equal: ${pairs.join(', ')}.` : ' No hand-built equal ran, so there is no × equal.';
}

/** The report; `chartFiles` maps each chart to its file name relative to the report. */
export function formatCompareMarkdown(r: CompareResult, chartFiles: Partial<Record<Chart['name'], string>> = {}): string {
  const reps = r.options.reps;
  const o = r.cpuOrdering;
  const out: string[] = [
    '# weft bench compare',
    '',
    `Run ${r.startedAt} to ${r.finishedAt}. Host: ${r.host.cpus} CPUs (${r.host.cpuModel}), kernel ${r.host.kernel}, ${r.host.memTotalMiB} MiB.`,
    `Options: backends ${r.options.backends.join(', ')}; ${reps} repetitions of ${r.options.seconds} s per figure after a ${r.options.warmupSeconds} s warm-up, variants alternating.`,
    'The bare underlay is node to node with no pod network; every other variant is pod to pod across two lab nodes.',
    `Client and server are network namespaces on one host kernel, so CPU and memory figures are host-wide.`,
    '',
  ];
  const legend =
    `Cells: median (min–max) over the repetitions; ${NOISY_MARK} marks a spread (max − min) / median over ${SPREAD_FLAG * 100}%, too noisy to rank on. ` +
    `× bare: the median over the bare underlay's;${equalsLine(r)}`;
  for (const g of GROUPS) {
    const rows = table(r, g.metrics);
    if (!rows.length) continue;
    out.push(`## ${g.title}`, '', ...(g.about ? [g.about, ''] : []), ...rows, '', legend, '');
    if (g.title === 'UDP') out.push(`UDP datagram size: ${r.variants.map((v) => `${v.label} ${v.udpDatagramBytes} B (MTU ${v.mtu})`).join(', ')}.`, '');
  }
  const notes = r.notes.map((n) => `- ${n}`);
  if (notes.length) out.push('## Notes', '', ...notes, '');
  const charts = (['bandwidth', 'latency', 'cpu'] as const).filter((c) => chartFiles[c]);
  if (charts.length) out.push('## Charts', '', ...charts.map((c) => `![${c} chart](${chartFiles[c]})`), '');
  out.push(
    '## CPU ordering',
    '',
    `Ranked on ${METRICS[o.metric].label} (${METRICS[o.metric].unit}), weft backends only, cheapest first; backends whose min–max ranges overlap are a tie (≈), and a tie agrees with either order.`,
    '',
    `- measured, cheapest first: ${o.measured.length ? o.measured.join(', ') : 'none'}`,
    `- classic: ${o.classic.length ? o.classic.join(' < ') : 'none'}${o.classic.length === CLASSIC_CPU_ORDER.length ? '' : ` (${CLASSIC_CPU_ORDER.join(' < ')}, restricted to the backends measured)`}`,
    `- matches the classic ordering: ${o.matchesClassic ? 'yes' : 'no'}`,
    '',
    `**${o.summary}.**`,
  );
  return out.join('\n') + '\n';
}
