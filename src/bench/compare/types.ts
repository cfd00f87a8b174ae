// The shapes of `weft bench compare`: what the runner measures (raw samples
// per variant and repetition) and what the report is made of (statistics,
// ratios, the CPU ordering). The runner (run.ts) fills a RawCompare; the
// analysis (analyse.ts) turns it into a CompareResult; the writers (JSON in
// knb's layout, Markdown, SVG charts) read only the CompareResult.
import type { BackendType } from '../../config/netconf.js';

/** Every variant a comparison can hold. */
export type VariantKey = 'bare' | 'host-gw' | 'vxlan' | 'udp' | 'bgp' | 'hand-routes' | 'hand-vxlan';

/**
 * bare: node to node over the underlay, no pod network (the reference every
 * figure is a ratio of); weft: a weft backend, pod to pod; hand: a backend's
 * data path built by hand, pod to pod.
 */
export type VariantKind = 'bare' | 'weft' | 'hand';

/** The hand-built equal of each weft backend. */
export const HAND_BUILT_EQUAL: Record<BackendType, VariantKey> = {
  'host-gw': 'hand-routes',
  bgp: 'hand-routes', // BIRD installs the same kernel routes host-gw writes
  vxlan: 'hand-vxlan',
  udp: 'hand-vxlan', // userspace encapsulation against the kernel's
};

export const VARIANT_LABEL: Record<VariantKey, string> = {
  bare: 'bare underlay',
  'host-gw': 'weft host-gw',
  vxlan: 'weft vxlan',
  udp: 'weft udp',
  bgp: 'weft bgp',
  'hand-routes': 'hand-built routes',
  'hand-vxlan': 'hand-built vxlan',
};

/** Which way a metric improves: it decides what "better" means in ratios and charts. */
export type Better = 'higher' | 'lower';

export interface MetricInfo {
  /** Short name for tables and chart legends. */
  label: string;
  unit: string;
  better: Better;
}

/**
 * Every figure a repetition yields, by key. The keys are the contract
 * between the runner, the analysis and the writers; a repetition may lack a
 * figure (e.g. no BIRD outside bgp), never hold one not listed here.
 */
export const METRICS = {
  'tcp1.gbps': { label: 'TCP, 1 stream', unit: 'Gbit/s', better: 'higher' },
  'tcp1.retransmits': { label: 'TCP 1 stream retransmits', unit: 'segments', better: 'lower' },
  'tcp1.cpuPerGbit': { label: 'CPU per Gbit, TCP 1 stream', unit: 'CPU s/Gbit', better: 'lower' },
  'tcp1.softirqPerGbit': { label: 'softirq per Gbit, TCP 1 stream', unit: 'CPU s/Gbit', better: 'lower' },
  'tcp1.agentCpuPerGbit': { label: 'agent CPU per Gbit, TCP 1 stream', unit: 'CPU s/Gbit', better: 'lower' },
  'tcp4.gbps': { label: 'TCP, 4 streams', unit: 'Gbit/s', better: 'higher' },
  'tcp4.retransmits': { label: 'TCP 4 streams retransmits', unit: 'segments', better: 'lower' },
  'tcp4.cpuPerGbit': { label: 'CPU per Gbit, TCP 4 streams', unit: 'CPU s/Gbit', better: 'lower' },
  'tcp4.softirqPerGbit': { label: 'softirq per Gbit, TCP 4 streams', unit: 'CPU s/Gbit', better: 'lower' },
  'udp.gbps': { label: 'UDP received', unit: 'Gbit/s', better: 'higher' },
  'udp.lossPercent': { label: 'UDP loss', unit: '%', better: 'lower' },
  'udp.jitterMs': { label: 'UDP jitter', unit: 'ms', better: 'lower' },
  'udp.cpuPerGbit': { label: 'CPU per Gbit, UDP', unit: 'CPU s/Gbit', better: 'lower' },
  'udp.softirqPerGbit': { label: 'softirq per Gbit, UDP', unit: 'CPU s/Gbit', better: 'lower' },
  'ping.idle.p50Ms': { label: 'ping idle p50', unit: 'ms', better: 'lower' },
  'ping.idle.p99Ms': { label: 'ping idle p99', unit: 'ms', better: 'lower' },
  'ping.loaded.p50Ms': { label: 'ping under TCP load p50', unit: 'ms', better: 'lower' },
  'ping.loaded.p99Ms': { label: 'ping under TCP load p99', unit: 'ms', better: 'lower' },
  'rr.perSecond': { label: 'request/response rate (sockperf ping-pong)', unit: 'transactions/s', better: 'higher' },
  'rr.p50Us': { label: 'request/response latency p50 (sockperf)', unit: 'µs', better: 'lower' },
  'rr.p99Us': { label: 'request/response latency p99 (sockperf)', unit: 'µs', better: 'lower' },
  'mem.agentRssMiB': { label: 'agent RSS (per node)', unit: 'MiB', better: 'lower' },
  'mem.birdRssMiB': { label: 'BIRD RSS (per node)', unit: 'MiB', better: 'lower' },
  'mem.hostUsedMiB': { label: 'host memory used', unit: 'MiB', better: 'lower' },
} as const satisfies Record<string, MetricInfo>;

export type MetricKey = keyof typeof METRICS;

/** One repetition's figures for one variant. */
export type RepFigures = Partial<Record<MetricKey, number>>;

export interface RawVariant {
  key: VariantKey;
  label: string;
  kind: VariantKind;
  /** For a weft variant: its hand-built equal's key, when that variant ran. */
  equal?: VariantKey;
  /** The MTU of the interface the traffic left by (pod eth0, or the node's underlay). */
  mtu: number;
  /** The UDP datagram size used, chosen to fit `mtu`. */
  udpDatagramBytes: number;
  /** One entry per repetition, in order. */
  reps: RepFigures[];
}

/** What a run measured, before any statistics. */
export interface RawCompare {
  startedAt: string;
  finishedAt: string;
  options: {
    backends: BackendType[];
    reps: number;
    /** Length of each timed traffic run. */
    seconds: number;
    warmupSeconds: number;
  };
  host: { cpus: number; cpuModel: string; kernel: string; memTotalMiB: number };
  variants: RawVariant[];
  /** Anything a reader must know (a figure missing and why, a tool fallback). */
  notes: string[];
}

/** A figure over the repetitions. */
export interface Stat {
  median: number;
  min: number;
  max: number;
  /** Number of repetitions that had the figure. */
  n: number;
  /** (max - min) / median; NaN when the median is 0 or there is no figure. */
  spread: number;
  /** spread > SPREAD_FLAG: the figure is too noisy to rank on. */
  noisy: boolean;
}

export const SPREAD_FLAG = 0.1;

export interface VariantResult extends RawVariant {
  stats: Partial<Record<MetricKey, Stat>>;
  /** median / the bare underlay's median, per metric both have. */
  ratioToBare: Partial<Record<MetricKey, number>>;
  /** median / the hand-built equal's median (weft variants whose equal ran). */
  ratioToEqual: Partial<Record<MetricKey, number>>;
}

export interface CpuOrdering {
  /** The metric ranked on. */
  metric: MetricKey;
  /** Backends cheapest first, by median. */
  measured: BackendType[];
  /** host-gw < bgp < vxlan < udp, restricted to the backends that ran. */
  classic: BackendType[];
  /**
   * Whether the measured order agrees with the classic one. Two backends whose
   * min–max ranges overlap are a tie, and a tie agrees with either order.
   */
  matchesClassic: boolean;
  /** One sentence for the report, e.g. "host-gw ≈ bgp < vxlan < udp: matches the classic ordering". */
  summary: string;
}

export interface CompareResult extends Omit<RawCompare, 'variants'> {
  variants: VariantResult[];
  cpuOrdering: CpuOrdering;
}
