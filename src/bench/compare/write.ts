// A comparison's files, side by side: the JSON (knb's layout) with its
// schema, the Markdown report and the three SVG charts it links to, all
// named after the run's start so runs never overwrite each other.
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { COMPARE_JSON_SCHEMA, toCompareJson } from './knb.js';
import { formatCompareMarkdown } from './markdown.js';
import { compareCharts, type Chart } from './svg.js';
import type { CompareResult } from './types.js';

export interface CompareOutputs {
  json: string;
  schema: string;
  markdown: string;
  /** One SVG per chart: bandwidth, latency, CPU. */
  charts: string[];
}

/** `compare-<startedAt with : and . as ->`: the stem every file of a run shares. */
export function compareFileStem(r: CompareResult): string {
  return `compare-${r.startedAt.replace(/[:.]/g, '-')}`;
}

/** Writes every output of `r` into `dir` (made if missing); returns their paths. */
export async function writeCompareOutputs(r: CompareResult, dir: string): Promise<CompareOutputs> {
  await mkdir(dir, { recursive: true });
  const base = join(dir, compareFileStem(r));
  const charts = compareCharts(r).map((c) => ({ ...c, path: `${base}-${c.name}.svg` }));
  const paths: CompareOutputs = { json: `${base}.json`, schema: `${base}.schema.json`, markdown: `${base}.md`, charts: charts.map((c) => c.path) };
  const chartFiles = Object.fromEntries(charts.map((c) => [c.name, basename(c.path)])) as Record<Chart['name'], string>;
  await writeFile(paths.json, JSON.stringify({ $schema: basename(paths.schema), ...toCompareJson(r) }, null, 2) + '\n');
  await writeFile(paths.schema, JSON.stringify(COMPARE_JSON_SCHEMA, null, 2) + '\n');
  await writeFile(paths.markdown, formatCompareMarkdown(r, chartFiles));
  for (const c of charts) await writeFile(c.path, c.svg);
  return paths;
}
