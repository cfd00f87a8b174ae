// `weft bench --backend vxlan` as a tool, kept short for CI: on the flat
// underlay weft's tunnel runs beside a hand-built kernel VXLAN device and
// beside host-gw; on the routed one beside the hand-built device only. It
// checks that every variant moved traffic and produced figures, never what
// the figures are (a benchmark is not a test).
import t from 'tap';
import { readdir } from 'node:fs/promises';
import { runBench } from '../../src/bench/runner.js';
import { formatMarkdown } from '../../src/bench/report.js';
import type { Topology } from '../../src/lab/topology.js';
import { Lab } from '../../src/lab/lab.js';

const PREFIX = 'vxb';
const LABS = [0, 1, 2].map((i) => `${PREFIX}${i}`);

async function leftoverNamespaces(): Promise<string[]> {
  return (await readdir('/run/netns').catch(() => [] as string[])).filter((ns) => ns.startsWith(`wl-${PREFIX}`));
}

for (const topology of ['flat', 'routed'] as Topology[]) {
  t.test(`weft bench --backend vxlan --topology ${topology}: figures for every variant`, async (t) => {
    for (const name of LABS) await Lab.destroy(name);
    t.teardown(async () => {
      for (const name of LABS) await Lab.destroy(name);
    });
    const [result] = await runBench({ backend: 'vxlan', topology, reps: 1, seconds: 1, warmupSeconds: 0, labNamePrefix: PREFIX });
    if (!result) throw new Error('runBench returned no result for IPv4');
    const expected = topology === 'flat' ? ['hand-built vxlan', 'weft host-gw'] : ['hand-built vxlan'];
    t.same(result.baselines.map((b) => b.label), expected, 'the baselines this topology allows');
    for (const v of [result.subject, ...result.baselines]) {
      t.ok(v.samples.length === 1 && v.samples[0]!.gbps > 0, `${v.label}: traffic flowed`);
    }
    t.same(result.comparisons.map((c) => c.baseline), expected, 'one ratio per baseline');
    t.ok(result.comparisons.every((c) => Number.isFinite(c.throughputRatio)), 'every ratio is a number');
    const md = formatMarkdown(result);
    if (topology === 'routed') t.match(md, /no host-gw comparison/, 'the report says why host-gw is missing');
    for (const c of result.comparisons) t.comment(`${topology}: weft vxlan / ${c.baseline} = ${c.throughputRatio.toFixed(3)} (1 s, 1 rep on a shared machine: a smoke figure only)`);
    t.same(await leftoverNamespaces(), [], 'the bench removed its labs');
  });
}
