// A comparison's raw samples turned into what the report says: per figure
// the median with its min–max, the noisy flag, the ratios to the bare
// underlay and to the hand-built equal, and the measured CPU ordering of
// the weft backends set against the classic one.
import { BACKEND_TYPES, type BackendType } from '../../config/netconf.js';
import { median, ratio } from '../stats.js';
import {
  HAND_BUILT_EQUAL,
  METRICS,
  SPREAD_FLAG,
  type CompareResult,
  type CpuOrdering,
  type MetricKey,
  type RawCompare,
  type RawVariant,
  type Stat,
  type VariantResult,
} from './types.js';

/** The ordering the classic comparisons report for CPU cost, cheapest first. */
export const CLASSIC_CPU_ORDER: readonly BackendType[] = ['host-gw', 'bgp', 'vxlan', 'udp'];

/** The figure the CPU ordering ranks on. */
export const CPU_ORDERING_METRIC: MetricKey = 'tcp1.cpuPerGbit';

const METRIC_KEYS = Object.keys(METRICS) as MetricKey[];

/** Median, min, max and spread of one figure over the repetitions that had it. */
export function summarize(values: number[]): Stat {
  const n = values.length;
  if (n === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0, spread: Number.NaN, noisy: false };
  const mid = median(values);
  const min = Math.min(...values);
  const max = Math.max(...values);
  // ratio() is NaN for a zero median (e.g. no retransmits): no spread to speak of, so never flagged.
  const spread = ratio(max - min, mid);
  return { median: mid, min, max, n, spread, noisy: spread > SPREAD_FLAG };
}

function variantStats(v: RawVariant): Partial<Record<MetricKey, Stat>> {
  const stats: Partial<Record<MetricKey, Stat>> = {};
  for (const key of METRIC_KEYS) {
    const values = v.reps.map((rep) => rep[key]).filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
    if (values.length) stats[key] = summarize(values);
  }
  return stats;
}

/** median(a) / median(b) for every figure both have, ratios that are not numbers left out. */
function ratios(a: Partial<Record<MetricKey, Stat>>, b: Partial<Record<MetricKey, Stat>>): Partial<Record<MetricKey, number>> {
  const out: Partial<Record<MetricKey, number>> = {};
  for (const key of METRIC_KEYS) {
    const x = a[key];
    const y = b[key];
    if (!x || !y) continue;
    const r = ratio(x.median, y.median);
    if (Number.isFinite(r)) out[key] = r;
  }
  return out;
}

const isBackend = (key: string): key is BackendType => (BACKEND_TYPES as readonly string[]).includes(key);

/** `a` costs more than `b` beyond doubt: their min–max ranges do not overlap. */
const clearlyAbove = (a: Stat, b: Stat): boolean => a.min > b.max;
const overlap = (a: Stat, b: Stat): boolean => !clearlyAbove(a, b) && !clearlyAbove(b, a);

/** Ranks the weft backends on CPU per Gbit and checks the ranking against host-gw < bgp < vxlan < udp. */
export function cpuOrdering(variants: readonly VariantResult[], metric: MetricKey = CPU_ORDERING_METRIC): CpuOrdering {
  const ranked = variants
    .filter((v) => v.kind === 'weft' && isBackend(v.key) && v.stats[metric])
    .map((v) => ({ backend: v.key as BackendType, stat: v.stats[metric]! }))
    .sort((a, b) => a.stat.median - b.stat.median);
  const measured = ranked.map((r) => r.backend);
  const classic = CLASSIC_CPU_ORDER.filter((b) => measured.includes(b));
  const statOf = (b: BackendType): Stat => ranked.find((r) => r.backend === b)!.stat;
  // Every pair the classic order ranks, checked on its own: ties are not transitive.
  const inversions: string[] = [];
  classic.forEach((cheaper, i) =>
    classic.slice(i + 1).forEach((dearer) => {
      if (clearlyAbove(statOf(cheaper), statOf(dearer))) inversions.push(`${dearer} below ${cheaper}`);
    }),
  );
  const classicText = classic.join(' < ');
  let summary: string;
  if (ranked.length === 0) summary = `no weft backend has a ${METRICS[metric].label} figure: no ordering to compare`;
  else if (ranked.length === 1) summary = `only ${measured[0]} has a ${METRICS[metric].label} figure: no ordering to compare`;
  else {
    const measuredText = ranked.map((r, i) => (i === 0 ? r.backend : `${overlap(ranked[i - 1]!.stat, r.stat) ? '≈' : '<'} ${r.backend}`)).join(' ');
    summary = inversions.length
      ? `${measuredText}: differs from the classic ordering ${classicText} (${inversions.join(', ')})`
      : `${measuredText}: matches the classic ordering ${classicText}`;
  }
  return { metric, measured, classic, matchesClassic: inversions.length === 0, summary };
}

/** Statistics, ratios and the CPU ordering of a comparison's raw samples. */
export function analyse(raw: RawCompare): CompareResult {
  const withStats = raw.variants.map((v) => ({ v, stats: variantStats(v) }));
  const statsOf = (key: string): Partial<Record<MetricKey, Stat>> | undefined => withStats.find((w) => w.v.key === key)?.stats;
  const bare = withStats.find((w) => w.v.kind === 'bare')?.stats;
  const variants: VariantResult[] = withStats.map(({ v, stats }) => {
    const equalKey = v.equal ?? (v.kind === 'weft' && isBackend(v.key) ? HAND_BUILT_EQUAL[v.key] : undefined);
    const equal = equalKey && equalKey !== v.key ? statsOf(equalKey) : undefined;
    return {
      ...v,
      ...(equal && v.kind === 'weft' ? { equal: equalKey } : {}),
      stats,
      ratioToBare: bare && v.kind !== 'bare' ? ratios(stats, bare) : {},
      ratioToEqual: equal && v.kind === 'weft' ? ratios(stats, equal) : {},
    };
  });
  return { ...raw, variants, cpuOrdering: cpuOrdering(variants) };
}
