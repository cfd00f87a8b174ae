// The statistics of a comparison: median with min–max, the noisy flag,
// ratios to bare and to the hand-built equal, the CPU ordering.
import t from 'tap';
import { analyse, cpuOrdering, summarize } from '../../src/bench/compare/analyse.js';
import type { RawCompare, Stat, VariantResult } from '../../src/bench/compare/types.js';
import { sampleRaw, sampleVariant } from './support/compare-sample.js';

t.test('summarize', async (t) => {
  t.same(summarize([10, 9.5, 10.4]), { median: 10, min: 9.5, max: 10.4, n: 3, spread: (10.4 - 9.5) / 10, noisy: false }, 'median, range and spread');
  t.equal(summarize([1, 2, 3, 4]).median, 2.5, 'an even count takes the mean of the middle two');
  t.equal(summarize([9, 10, 11.1]).noisy, true, 'a spread over 10% is noisy');
  t.equal(summarize([9.5, 10, 10.5]).noisy, false, 'a spread of exactly 10% is not');
  const zero = summarize([0, 0, 3]);
  t.same([Number.isNaN(zero.spread), zero.noisy], [true, false], 'a zero median has no spread and is never flagged');
  const none = summarize([]);
  t.same([none.n, Number.isNaN(none.median), Number.isNaN(none.spread), none.noisy], [0, true, true, false], 'no values: n 0 and NaN figures');
});

t.test('analyse: stats and ratios', async (t) => {
  const r = analyse(sampleRaw());
  const v = (key: string): VariantResult => r.variants.find((x) => x.key === key)!;
  t.same(v('vxlan').stats['tcp1.gbps'], { median: 8, min: 8 * 0.97, max: 8 * 1.03, n: 3, spread: (8 * 1.03 - 8 * 0.97) / 8, noisy: false }, 'a figure per metric per variant');
  t.equal(v('vxlan').ratioToBare['tcp1.gbps'], 8 / 22, 'ratio to the bare underlay');
  t.equal(v('vxlan').ratioToEqual['tcp1.gbps'], 8 / 8.2, 'ratio to the hand-built equal');
  t.equal(v('bgp').ratioToEqual['tcp1.cpuPerGbit'], 0.071 / 0.068, 'bgp is compared with the hand-built routes');
  t.same([v('bare').ratioToBare, v('bare').ratioToEqual], [{}, {}], 'the reference has no ratios of its own');
  t.same(v('hand-vxlan').ratioToEqual, {}, 'a hand-built variant has no equal');
  t.equal(v('host-gw').stats['mem.birdRssMiB'], undefined, 'a figure no repetition had is left out');
  t.equal(v('bare').ratioToBare['tcp1.agentCpuPerGbit'] ?? v('host-gw').ratioToBare['tcp1.agentCpuPerGbit'], undefined, 'no ratio where bare lacks the figure');
  t.same([r.startedAt, r.options.reps, r.notes], ['2026-12-02T07:00:00.000Z', 3, ['the machine was shared with other work: figures are noisy']], 'the run description is carried over');
});

t.test('analyse: missing pieces', async (t) => {
  const noEqual = analyse(sampleRaw(['bare', 'vxlan']));
  t.same(noEqual.variants[1]!.ratioToEqual, {}, 'no ratio to an equal that did not run');
  const noBare = analyse(sampleRaw(['host-gw', 'hand-routes']));
  t.same(noBare.variants[0]!.ratioToBare, {}, 'no ratio to bare when bare did not run');
  const partial: RawCompare = { ...sampleRaw(['bare']), variants: [{ ...sampleVariant('bare'), reps: [{ 'tcp1.gbps': 20 }, {}, { 'tcp1.gbps': 22, 'udp.gbps': Number.NaN }] }] };
  const s = analyse(partial).variants[0]!.stats;
  t.same([s['tcp1.gbps']?.n, s['udp.gbps']], [2, undefined], 'n counts the repetitions that had the figure; NaN is no figure');
  const noisy = analyse({ ...sampleRaw(['bare']), variants: [sampleVariant('bare', { 'udp.gbps': 0.2 })] }).variants[0]!.stats;
  t.same([noisy['udp.gbps']!.noisy, noisy['tcp1.gbps']!.noisy], [true, false], 'noisy flagged per figure');
});

const stat = (median: number, min: number, max: number): Stat => ({ median, min, max, n: 3, spread: (max - min) / median, noisy: false });
const weft = (key: 'host-gw' | 'vxlan' | 'udp' | 'bgp', s: Stat): VariantResult => ({
  ...sampleVariant(key),
  stats: { 'tcp1.cpuPerGbit': s },
  ratioToBare: {},
  ratioToEqual: {},
});

t.test('CPU ordering', async (t) => {
  const sample = analyse(sampleRaw()).cpuOrdering;
  t.same(
    sample,
    {
      metric: 'tcp1.cpuPerGbit',
      measured: ['host-gw', 'bgp', 'vxlan', 'udp'],
      classic: ['host-gw', 'bgp', 'vxlan', 'udp'],
      matchesClassic: true,
      summary: 'host-gw ≈ bgp < vxlan < udp: matches the classic ordering host-gw < bgp < vxlan < udp',
    },
    'overlapping ranges are ties, the rest strictly ordered',
  );
  const swapped = cpuOrdering([weft('host-gw', stat(0.07, 0.068, 0.072)), weft('vxlan', stat(0.05, 0.049, 0.051)), weft('udp', stat(0.4, 0.39, 0.41))]);
  t.same(
    [swapped.measured, swapped.matchesClassic, swapped.summary],
    [['vxlan', 'host-gw', 'udp'], false, 'vxlan < host-gw < udp: differs from the classic ordering host-gw < vxlan < udp (vxlan below host-gw)'],
    'a clear inversion breaks the match and is named',
  );
  const tied = cpuOrdering([weft('host-gw', stat(0.07, 0.06, 0.09)), weft('vxlan', stat(0.065, 0.064, 0.08))]);
  t.same([tied.measured, tied.matchesClassic, tied.summary], [['vxlan', 'host-gw'], true, 'vxlan ≈ host-gw: matches the classic ordering host-gw < vxlan'], 'a tie agrees with either order');
  const hand = cpuOrdering([weft('udp', stat(0.4, 0.39, 0.41)), { ...weft('vxlan', stat(0.01, 0.01, 0.01)), kind: 'hand', key: 'hand-vxlan' }]);
  t.same([hand.measured, hand.summary], [['udp'], 'only udp has a CPU per Gbit, TCP 1 stream figure: no ordering to compare'], 'only weft backends are ranked');
  t.same(cpuOrdering([]).summary, 'no weft backend has a CPU per Gbit, TCP 1 stream figure: no ordering to compare', 'nothing to rank');
});
