// The benchmark runner end to end, as a tool: it builds both variants, moves
// traffic through each in both address families, writes its reports and
// removes its labs. It checks that figures exist, never what they are (a
// benchmark is not a test).
import t from 'tap';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeReport } from '../../src/bench/report.js';
import { runBench, type BenchResult } from '../../src/bench/runner.js';
import { Lab } from '../../src/lab/lab.js';

const PREFIX = 'tb';

t.test('weft bench host-gw, dual: both variants measured in both families, reports written, labs removed', async (t) => {
  const labs = [`${PREFIX}0`, `${PREFIX}1`];
  for (const name of labs) await Lab.destroy(name);
  const out = await mkdtemp(join(tmpdir(), 'wl-bench-test-'));
  t.teardown(async () => {
    for (const name of labs) await Lab.destroy(name);
    await rm(out, { recursive: true, force: true });
  });

  const lines: string[] = [];
  const results = await runBench({ backend: 'host-gw', families: [4, 6], reps: 2, seconds: 1, warmupSeconds: 0, labNamePrefix: PREFIX, log: (l) => lines.push(l) });
  t.same(results.map((r) => r.family), [4, 6], 'one result per family, IPv4 first');
  t.same(results.map((r) => [r.subject.label, ...r.baselines.map((b) => b.label)]), [['weft host-gw', 'hand-built routes'], ['weft host-gw', 'hand-built routes']]);
  const measured = results.flatMap((r) => [r.subject, ...r.baselines].map((v) => `IPv${r.family} ${v.label}: ${v.samples.length} samples, ${v.samples.every((s) => s.gbps > 0 && Number.isFinite(s.cpuSecondsPerGbit)) ? 'traffic' : 'NO TRAFFIC'}`));
  t.same(measured, [
    'IPv4 weft host-gw: 2 samples, traffic',
    'IPv4 hand-built routes: 2 samples, traffic',
    'IPv6 weft host-gw: 2 samples, traffic',
    'IPv6 hand-built routes: 2 samples, traffic',
  ], 'every variant moved traffic once per repetition in each family, CPU accounted');
  t.same(
    lines.filter((l) => l.startsWith('rep ')).map((l) => l.replace(/:.*/, '')),
    [
      'rep 1/2 weft host-gw over IPv4', 'rep 1/2 hand-built routes over IPv4', 'rep 1/2 weft host-gw over IPv6', 'rep 1/2 hand-built routes over IPv6',
      'rep 2/2 hand-built routes over IPv4', 'rep 2/2 weft host-gw over IPv4', 'rep 2/2 hand-built routes over IPv6', 'rep 2/2 weft host-gw over IPv6',
    ],
    'repetitions alternate the order of the variants, in each family',
  );
  t.same(results.map((r) => r.comparisons.map((c) => Number.isFinite(c.throughputRatio))), [[true], [true]], 'a ratio per family');
  for (const r of results) t.comment(`IPv${r.family} host-gw/hand-built throughput ${r.comparisons[0]!.throughputRatio.toFixed(3)} (1 s runs on a shared machine: a smoke figure only)`);

  const paths = [];
  for (const r of results) paths.push(await writeReport(r, out));
  const saved = await Promise.all(paths.map(async (p) => JSON.parse(await readFile(p.json, 'utf8')) as BenchResult));
  t.same(saved.map((s) => [s.family, s.subject.medianGbps]), results.map((r) => [r.family, r.subject.medianGbps]), 'the JSON reports carry the family and the figures');
  t.match(await readFile(paths[1]!.markdown, 'utf8'), /^## weft bench: host-gw \(flat topology, IPv6\)/);
  t.same((await readdir(out)).sort(), paths.flatMap((p) => [p.json, p.markdown]).map((p) => p.slice(out.length + 1)).sort());
  t.match(paths[1]!.json, /bench-host-gw-flat-ipv6-/, 'the IPv6 report is named apart');

  for (const name of labs) t.notOk(existsSync(`/run/weft-lab/${name}`), `lab ${name} was removed`);
  t.same((await readdir('/run/netns').catch(() => [] as string[])).filter((ns) => ns.startsWith(`wl-${PREFIX}`)), []);
});
