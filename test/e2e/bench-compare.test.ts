// `weft bench compare` end to end, as an operator runs it: the built CLI
// (build dist first: `npx tsc -p tsconfig.json`) brings up its labs, measures
// host-gw and vxlan against their hand-built equals and the bare underlay,
// writes the JSON, its schema, the Markdown report and the charts, and
// removes everything it started. It checks the outputs' shape, never the
// figures (a benchmark is not a test). Labs cmp0..cmp3 (namespaces wl-cmp*).
import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { validateCompareJson } from '../../src/bench/compare/knb.js';
import { COMPARE_LAB_PREFIX, MAX_LABS } from '../../src/bench/compare/run.js';
import { Lab, agentEntry } from '../../src/lab/lab.js';
import { runUnhooked } from './support/lab-fixture.js';

const LABS = Array.from({ length: MAX_LABS }, (_, i) => `${COMPARE_LAB_PREFIX}${i}`);

/** What a run of the comparison could leave behind: lab state, namespaces, processes naming a lab dir, sockperf servers. */
async function leftovers(): Promise<string[]> {
  const states = LABS.filter((name) => existsSync(`/run/weft-lab/${name}`)).map((name) => `lab ${name}`);
  const namespaces = (await readdir('/run/netns').catch(() => [] as string[])).filter((ns) => ns.startsWith(`wl-${COMPARE_LAB_PREFIX}`)).map((ns) => `namespace ${ns}`);
  const processes = readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      } catch {
        return '';
      }
    })
    .filter((cmd) => cmd.includes(`weft-lab-${COMPARE_LAB_PREFIX}`) || cmd.startsWith('sockperf server'))
    .map((cmd) => `process ${cmd.slice(0, 80)}`);
  return [...states, ...namespaces, ...processes];
}

t.test('weft bench compare --backends host-gw,vxlan: every variant measured, JSON + schema + Markdown + 3 charts written, nothing left behind', async (t) => {
  for (const name of LABS) await Lab.destroy(name);
  const out = await mkdtemp(join(tmpdir(), 'weft-compare-test-'));
  t.teardown(async () => {
    for (const name of LABS) await Lab.destroy(name);
    await rm(out, { recursive: true, force: true });
  });

  const started = performance.now();
  const run = await runUnhooked(
    [process.execPath, agentEntry(), 'bench', 'compare', '--backends', 'host-gw,vxlan', '--reps', '1', '--seconds', '1', '--warmup', '0', '--out', out],
    { check: false, timeoutMs: 180_000 },
  );
  t.comment(`weft bench compare ran ${((performance.now() - started) / 1000).toFixed(1)} s`);
  t.equal(run.code, 0, `exits 0 (stderr: ${run.stderr.trim().split('\n').slice(-3).join(' | ')})`);

  const files = (await readdir(out)).sort();
  const kinds = files.map((f) => (f.endsWith('.schema.json') ? 'schema' : f.endsWith('.json') ? 'json' : f.endsWith('.md') ? 'markdown' : f.endsWith('.svg') ? 'svg' : f));
  t.same(kinds.slice().sort(), ['json', 'markdown', 'schema', 'svg', 'svg', 'svg'], 'the JSON, its schema, the Markdown report and three SVG charts');

  const jsonFile = files.find((f) => f.endsWith('.json') && !f.endsWith('.schema.json'));
  const doc = JSON.parse(await readFile(join(out, jsonFile ?? 'missing.json'), 'utf8')) as { weft: { variants: Record<string, { label: string }> } };
  t.same(validateCompareJson(doc), [], 'the JSON passes its schema');
  const labels = Object.values(doc.weft.variants).map((v) => v.label);
  t.same(labels, ['bare underlay', 'weft host-gw', 'weft vxlan', 'hand-built routes', 'hand-built vxlan'], 'the variants: bare, each backend, each distinct hand-built equal');

  const markdown = await readFile(join(out, files.find((f) => f.endsWith('.md')) ?? 'missing.md'), 'utf8');
  t.match(markdown.match(/^## .*$/gm)?.at(-1) ?? '', /CPU ordering/i, 'the Markdown report ends with the CPU ordering');
  t.equal(run.stdout.startsWith(markdown.trimEnd().slice(0, 200)), true, 'the Markdown report goes to stdout');

  const keys = ['bare', 'host-gw', 'vxlan', 'hand-routes', 'hand-vxlan'];
  const barsPerChart = await Promise.all(
    files.filter((f) => f.endsWith('.svg')).map(async (f) => {
      const svg = await readFile(join(out, f), 'utf8');
      const variants = new Set([...svg.matchAll(/<rect class="bar" data-variant="([^"]+)"/g)].map((m) => m[1]));
      return keys.filter((k) => variants.has(k)).length;
    }),
  );
  t.same(barsPerChart, [keys.length, keys.length, keys.length], 'each chart has a bar for every variant');

  t.same(await leftovers(), [], 'no lab, namespace or process of the run is left');
});
