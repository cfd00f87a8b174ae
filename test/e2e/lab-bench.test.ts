// The benchmark runner end to end, as a tool: it builds both variants, moves
// traffic through each, writes its reports and removes its labs. It checks
// that figures exist, never what they are (a benchmark is not a test).
import t from 'tap';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeReport } from '../../src/bench/report.js';
import { runBench, type BenchResult } from '../../src/bench/runner.js';
import { Lab } from '../../src/lab/lab.js';

const PREFIX = 'tb';

t.test('weft bench host-gw: both variants measured, reports written, labs removed', async (t) => {
  const labs = [`${PREFIX}0`, `${PREFIX}1`];
  for (const name of labs) await Lab.destroy(name);
  const out = await mkdtemp(join(tmpdir(), 'wl-bench-test-'));
  t.teardown(async () => {
    for (const name of labs) await Lab.destroy(name);
    await rm(out, { recursive: true, force: true });
  });

  const lines: string[] = [];
  const [result] = await runBench({ backend: 'host-gw', reps: 2, seconds: 1, warmupSeconds: 0, labNamePrefix: PREFIX, log: (l) => lines.push(l) });
  if (!result) throw new Error('runBench returned no result for IPv4');
  t.same([result.subject.label, ...result.baselines.map((b) => b.label)], ['weft host-gw', 'hand-built routes']);
  for (const v of [result.subject, ...result.baselines]) {
    t.equal(v.samples.length, 2, `${v.label}: one sample per repetition`);
    t.ok(v.samples.every((s) => s.gbps > 0 && Number.isFinite(s.cpuSecondsPerGbit)), `${v.label}: traffic flowed and CPU was accounted`);
  }
  t.same(
    lines.filter((l) => l.startsWith('rep ')).map((l) => l.replace(/:.*/, '')),
    ['rep 1/2 weft host-gw', 'rep 1/2 hand-built routes', 'rep 2/2 hand-built routes', 'rep 2/2 weft host-gw'],
    'repetitions alternate the order of the variants',
  );
  t.equal(result.comparisons.length, 1);
  t.ok(Number.isFinite(result.comparisons[0]!.throughputRatio));
  t.comment(`host-gw/hand-built throughput ${result.comparisons[0]!.throughputRatio.toFixed(3)} (1 s runs on a shared machine: a smoke figure only)`);

  const paths = await writeReport(result, out);
  const saved = JSON.parse(await readFile(paths.json, 'utf8')) as BenchResult;
  t.equal(saved.subject.medianGbps, result.subject.medianGbps);
  t.match(await readFile(paths.markdown, 'utf8'), /\| hand-built routes \|/);
  t.same((await readdir(out)).sort(), [paths.json, paths.markdown].map((p) => p.slice(out.length + 1)).sort());

  for (const name of labs) t.notOk(existsSync(`/run/weft-lab/${name}`), `lab ${name} was removed`);
  t.same((await readdir('/run/netns').catch(() => [] as string[])).filter((ns) => ns.startsWith(`wl-${PREFIX}`)), []);
});
