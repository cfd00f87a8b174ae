// The scale benchmark's figures: one Markdown table (a column per N, a row
// per figure, targets marked met/missed) and the full results as JSON.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ScaleResult } from './run.js';
import type { PassFigures, ReconcileFigures } from './reconcile.js';

/** The targets, checked on every N (they are stated for N = 1000). */
export const TARGETS = {
  visibilityP99Ms: 2000,
  fromEmptyMs: 1000,
  changeMs: 50,
  writesPerPass: 3,
} as const;

const fixed = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const kib = (bytes: number): string => fixed(bytes / 1024, 1);
const mark = (ok: boolean): string => (ok ? 'met' : 'missed');

interface Row {
  label: string;
  cell: (r: ScaleResult) => string;
  /** For a target row: whether r meets it. */
  target?: (r: ScaleResult) => boolean;
}

function rec(r: ScaleResult, backend: string): ReconcileFigures | undefined {
  return r.reconciler.find((x) => x.backend === backend);
}

const change = (f: ReconcileFigures): number => Math.max(f.add.ms, f.remove.ms);
const writes = (f: ReconcileFigures): number => Math.max(...[f.fromEmpty, f.add, f.remove, f.noop].map((p: PassFigures) => p.writes));

/**
 * O(1) etcd work per agent per change: about one watch message per watcher,
 * and from the steady nodes' own request counters no list of the lease
 * directory (a re-list) and no single-key read beyond their renewals' (each
 * reads its key, then sends one keepalive; a failed try may read without one): a per-key read by every agent would be N per change.
 */
export function constantEtcdWork(r: ScaleResult): boolean {
  const e = r.etcd;
  return e.relists === 0 && e.steadyRequests.lists === 0 && e.steadyRequests.ranges <= e.steadyRequests.keepalives + e.renewalFailures && e.perAgentPerChange.watchMessages <= 2;
}

function reconcilerRows(backend: string): Row[] {
  const f = (r: ScaleResult) => rec(r, backend);
  return [
    {
      label: `${backend}: N−1 peers programmed from empty, ms`,
      cell: (r) => fixed(f(r)?.fromEmpty.ms ?? NaN) + ` (${f(r)?.programmedRoutes ?? 0}/${f(r)?.peers ?? 0} routes)`,
      target: (r) => (f(r)?.fromEmpty.ms ?? Infinity) < TARGETS.fromEmptyMs && f(r)!.programmedRoutes === f(r)!.peers,
    },
    { label: `${backend}: one peer added / removed, ms`, cell: (r) => `${fixed(f(r)?.add.ms ?? NaN)} / ${fixed(f(r)?.remove.ms ?? NaN)}`, target: (r) => change(f(r)!) < TARGETS.changeMs },
    { label: `${backend}: pass with nothing to change, ms`, cell: (r) => fixed(f(r)?.noop.ms ?? NaN) },
    {
      label: `${backend}: write processes per pass (empty / add / remove)`,
      cell: (r) => `${f(r)?.fromEmpty.writes} / ${f(r)?.add.writes} / ${f(r)?.remove.writes}`,
      target: (r) => writes(f(r)!) <= TARGETS.writesPerPass,
    },
    { label: `${backend}: read processes per pass`, cell: (r) => String(Math.max(f(r)?.fromEmpty.reads ?? 0, f(r)?.add.reads ?? 0)) },
    { label: `${backend}: desired(own, N−1 peers), ms`, cell: (r) => fixed(f(r)?.desiredMs ?? NaN, 2) },
  ];
}

const ROWS: Row[] = [
  { label: 'joins completed / seen by every agent in time', cell: (r) => `${r.visibility.joinsCompleted} / ${r.visibility.joinsSeenByAll} of ${r.joins}` },
  { label: 'agents that had a join by the end, mean', cell: (r) => fixed(r.visibility.meanAgentsReached) },
  { label: 'join visible to every agent, p50 ms', cell: (r) => fixed(r.visibility.p50) },
  { label: `join visible to every agent, p99 ms (≤ ${TARGETS.visibilityP99Ms})`, cell: (r) => fixed(r.visibility.p99), target: (r) => r.visibility.joinsSeenByAll === r.joins && r.visibility.p99 <= TARGETS.visibilityP99Ms },
  { label: 'join visible to every agent, max ms', cell: (r) => fixed(r.visibility.max) },
  { label: 'etcd watchers / watch streams', cell: (r) => `${r.etcd.watchers} / ${r.etcd.watchStreams}` },
  { label: 'etcd requests per change (all gRPC calls)', cell: (r) => fixed(r.etcd.perChange.requests, 1) },
  { label: 'etcd bytes per change, received / sent KiB', cell: (r) => `${kib(r.etcd.perChange.receivedBytes)} / ${kib(r.etcd.perChange.sentBytes)}` },
  { label: 'etcd watch messages per change', cell: (r) => fixed(r.etcd.perChange.watchMessages, 1) },
  { label: 'per agent per change: watch messages / bytes sent', cell: (r) => `${fixed(r.etcd.perAgentPerChange.watchMessages, 2)} / ${fixed(r.etcd.perAgentPerChange.sentBytes)}` },
  { label: "steady agents' own requests in churn: lists / key reads / keepalives / other", cell: (r) => `${r.etcd.steadyRequests.lists} / ${r.etcd.steadyRequests.ranges} / ${r.etcd.steadyRequests.keepalives} / ${r.etcd.steadyRequests.other}` },
  { label: 'in churn: renewals / failed renewals / re-lists / watch restarts', cell: (r) => `${r.etcd.renewalsInWindow} / ${r.etcd.renewalFailures} / ${r.etcd.relists} / ${r.etcd.watchRetries}` },
  { label: 'one change costs each agent O(1) etcd work', cell: () => '', target: constantEtcdWork },
  { label: 'etcd CPU during churn, s / RSS MiB', cell: (r) => `${fixed(r.etcd.cpuSecondsChurn, 2)} / ${fixed(r.etcd.rssBytes / 1048576)}` },
  { label: 'agent memory: RSS / heap KiB per agent', cell: (r) => `${kib(r.agent.rssBytes)} / ${kib(r.agent.heapBytes)}` },
  { label: 'agent CPU idle, ms per s per agent', cell: (r) => fixed(r.agent.cpuIdleMsPerSec, 3) },
  { label: 'agent CPU in churn, ms per s per agent', cell: (r) => fixed(r.agent.cpuChurnMsPerSec, 2) },
  { label: 'agent CPU per change, ms per agent', cell: (r) => fixed(r.agent.cpuMsPerChange, 3) },
  { label: 'desired(own, peers) per lease event, ms', cell: (r) => fixed(r.agent.desiredMsPerCall, 3) },
  ...reconcilerRows('host-gw'),
  ...reconcilerRows('vxlan'),
];

export function formatScaleMarkdown(results: readonly ScaleResult[], host: string): string {
  const first = results[0]!;
  const head = ['figure', ...results.map((r) => `N = ${r.nodes}`)];
  const lines = [
    '## weft bench scale',
    '',
    `${host}. Simulated agents (${first.backend}) against one real etcd; ${first.joins} joins at ${first.joinRate}/s per N; lease TTL ${first.ttlSeconds} s. ` +
      'Reconciler figures: a real namespace programmed through iproute2, median of the passes.',
    '',
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i ? '---:' : '---')).join('|')}|`,
  ];
  for (const row of ROWS) {
    const cells = results.map((r) => {
      const text = row.cell(r);
      if (!row.target) return text;
      return `${text}${text ? ' ' : ''}**${mark(row.target(r))}**`;
    });
    lines.push(`| ${row.label} | ${cells.join(' | ')} |`);
  }
  lines.push(
    '',
    'Visibility: from the moment a joiner asked for its lease (list, grant, create and the contention check all count) to the moment the last steady agent had the new peer in its desired state. ' +
      "Steady agents' own requests come from their subnet managers' counters (weft_etcd_requests_total): a list there would be a re-list, a key read without its renewal's keepalive a per-key read. " +
      'Write processes: iproute2 processes that change the kernel in one pass.',
  );
  return lines.join('\n') + '\n';
}

export async function writeScaleReport(results: readonly ScaleResult[], dir: string, host: string): Promise<{ json: string; markdown: string }> {
  await mkdir(dir, { recursive: true });
  const stamp = results[0]!.startedAt.replace(/[:.]/g, '-');
  const base = join(dir, `bench-scale-${results.map((r) => r.nodes).join('-')}-${stamp}`);
  const paths = { json: `${base}.json`, markdown: `${base}.md` };
  await writeFile(paths.json, JSON.stringify({ host, targets: TARGETS, results }, null, 2) + '\n');
  await writeFile(paths.markdown, formatScaleMarkdown(results, host));
  return paths;
}
