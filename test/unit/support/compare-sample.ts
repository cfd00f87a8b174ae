// A comparison with figures of the size this machine measures (three
// repetitions per variant), for the analysis and writer tests.
import { METRICS, VARIANT_LABEL, type MetricKey, type RawCompare, type RawVariant, type RepFigures, type VariantKey, type VariantKind } from '../../../src/bench/compare/types.js';

type Medians = Partial<Record<MetricKey, number>>;

const common = (gbps1: number, gbps4: number, udp: number, cpu: number, softirq: number, pingMs: number, rrUs: number): Medians => ({
  'tcp1.gbps': gbps1,
  'tcp1.retransmits': 0,
  'tcp1.cpuPerGbit': cpu,
  'tcp1.softirqPerGbit': softirq,
  'tcp4.gbps': gbps4,
  'tcp4.retransmits': 12,
  'tcp4.cpuPerGbit': cpu * 1.1,
  'tcp4.softirqPerGbit': softirq * 1.2,
  'udp.gbps': udp,
  'udp.lossPercent': 2,
  'udp.jitterMs': 0.01,
  'udp.cpuPerGbit': cpu * 2,
  'udp.softirqPerGbit': softirq * 2,
  'ping.idle.p50Ms': pingMs,
  'ping.idle.p99Ms': pingMs * 2,
  'ping.loaded.p50Ms': pingMs * 8,
  'ping.loaded.p99Ms': pingMs * 20,
  'rr.perSecond': 1e6 / rrUs,
  'rr.p50Us': rrUs,
  'rr.p99Us': rrUs * 2.5,
  'mem.hostUsedMiB': 1900,
});

export const SAMPLE_MEDIANS: Record<VariantKey, Medians> = {
  bare: common(22, 24, 6, 0.05, 0.012, 0.03, 18),
  'host-gw': { ...common(16, 18, 4.5, 0.07, 0.02, 0.05, 24), 'tcp1.agentCpuPerGbit': 0.0005, 'mem.agentRssMiB': 62 },
  'hand-routes': common(16.5, 18.2, 4.6, 0.068, 0.02, 0.05, 24),
  vxlan: { ...common(8, 10, 2.6, 0.13, 0.05, 0.07, 31), 'tcp1.agentCpuPerGbit': 0.001, 'mem.agentRssMiB': 63 },
  'hand-vxlan': common(8.2, 10.3, 2.7, 0.125, 0.05, 0.07, 30),
  udp: { ...common(2.8, 3.1, 0.7, 0.4, 0.08, 0.12, 55), 'tcp1.agentCpuPerGbit': 0.2, 'mem.agentRssMiB': 71 },
  bgp: { ...common(16, 17.9, 4.5, 0.071, 0.02, 0.05, 24), 'tcp1.agentCpuPerGbit': 0.0006, 'mem.agentRssMiB': 64, 'mem.birdRssMiB': 9 },
};

const KIND: Record<VariantKey, VariantKind> = {
  bare: 'bare',
  'host-gw': 'weft',
  vxlan: 'weft',
  udp: 'weft',
  bgp: 'weft',
  'hand-routes': 'hand',
  'hand-vxlan': 'hand',
};

/** Three repetitions around each median: -3%, 0, +3% (spread 0.06, under the flag), or `spreads[key]` either side. */
export function sampleVariant(key: VariantKey, spreads: Partial<Record<MetricKey, number>> = {}): RawVariant {
  const medians = SAMPLE_MEDIANS[key];
  const rep = (sign: number): RepFigures => {
    const figures: RepFigures = {};
    for (const [k, m] of Object.entries(medians) as [MetricKey, number][]) figures[k] = m * (1 + sign * (spreads[k] ?? 0.03));
    return figures;
  };
  const mtu = key === 'vxlan' || key === 'hand-vxlan' ? 1450 : key === 'udp' ? 1472 : 1500;
  return { key, label: VARIANT_LABEL[key], kind: KIND[key], mtu, udpDatagramBytes: mtu - 28, reps: [rep(-1), rep(0), rep(1)] };
}

export function sampleRaw(keys: VariantKey[] = ['bare', 'host-gw', 'hand-routes', 'vxlan', 'hand-vxlan', 'udp', 'bgp']): RawCompare {
  return {
    startedAt: '2026-12-02T07:00:00.000Z',
    finishedAt: '2026-12-02T07:25:30.000Z',
    options: { backends: ['host-gw', 'vxlan', 'udp', 'bgp'], reps: 3, seconds: 10, warmupSeconds: 2 },
    host: { cpus: 2, cpuModel: 'AMD EPYC 7B13', kernel: '6.18.44', memTotalMiB: 7940 },
    variants: keys.map((k) => sampleVariant(k)),
    notes: ['the machine was shared with other work: figures are noisy'],
  };
}

/** Every metric key, for tests that check a writer covers them all. */
export const ALL_METRICS = Object.keys(METRICS) as MetricKey[];
