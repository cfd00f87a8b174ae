// Benchmark results as a short Markdown table and as JSON, side by side on disk.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BenchResult, VariantSummary } from './runner.js';

const fixed = (n: number, digits: number): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

function row(v: VariantSummary): string {
  const samples = v.samples.map((s) => fixed(s.gbps, 2)).join(', ');
  return `| ${v.label} | ${fixed(v.medianGbps, 2)} | ${samples} | ${fixed(v.medianCpuSecondsPerGbit, 3)} | ${fixed(v.medianSoftirqSecondsPerGbit, 3)} | ${fixed(v.agentCpuSecondsTotal, 2)} |`;
}

export function formatMarkdown(r: BenchResult): string {
  const lines = [
    `## weft bench: ${r.backend} (${r.topology} topology, IPv${r.family})`,
    '',
    `iperf3 TCP pod to pod over IPv${r.family} across two nodes, ${r.reps} × ${r.seconds} s per variant, alternating; ${r.host.cpus} CPUs, kernel ${r.host.kernel}, ${r.startedAt}.`,
    '',
    '| variant | median Gbit/s | runs (Gbit/s) | CPU s/Gbit | softirq s/Gbit | agent CPU s |',
    '|---|---:|---|---:|---:|---:|',
    row(r.subject),
    ...r.baselines.map(row),
    '',
    ...r.comparisons.map(
      (c) => `**${r.subject.label} / ${c.baseline}**: throughput ${fixed(c.throughputRatio, 3)}, CPU per Gbit ${fixed(c.cpuPerGbitRatio, 3)}`,
    ),
    ...(r.notes ?? []).map((n) => `Note: ${n}.`),
    '',
    'CPU s/Gbit: system-wide non-idle CPU time (/proc/stat, all cores) during the run per Gbit received; agent CPU s: utime+stime of the agents, summed over all runs.',
  ];
  return lines.join('\n') + '\n';
}

/** Writes `<base>.json` and `<base>.md` into `dir` (an IPv6 result's base ends in -ipv6); returns both paths. */
export async function writeReport(r: BenchResult, dir: string): Promise<{ json: string; markdown: string }> {
  await mkdir(dir, { recursive: true });
  const stamp = r.startedAt.replace(/[:.]/g, '-');
  const base = join(dir, `bench-${r.backend}-${r.topology}${r.family === 6 ? '-ipv6' : ''}-${stamp}`);
  const paths = { json: `${base}.json`, markdown: `${base}.md` };
  await writeFile(paths.json, JSON.stringify(r, null, 2) + '\n');
  await writeFile(paths.markdown, formatMarkdown(r));
  return paths;
}
