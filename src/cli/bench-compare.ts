// `weft bench compare`: every backend, its hand-built equal and the bare
// underlay in one run, reported as JSON (knb's layout), Markdown and charts.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { analyse } from '../bench/compare/analyse.js';
import { runCompare } from '../bench/compare/run.js';
import { writeCompareOutputs } from '../bench/compare/write.js';
import type { RawCompare } from '../bench/compare/types.js';
import { BACKEND_TYPES, type BackendType } from '../config/netconf.js';
import { WeftError } from '../errors.js';
import { wholeNumber } from './bench.js';
import { parseCommand } from './flags.js';

export const COMPARE_HELP = `usage: weft bench compare [--backends host-gw,vxlan,udp,bgp] [--reps 3] [--seconds 5] [--warmup 2] [--out DIR]

  --backends LIST   weft backends to compare, comma-separated (default all four)
  --reps N          repetitions per variant, alternating their order (default 3;
                    the median and the spread need at least 3)
  --seconds N       length of each timed run (default 5)
  --warmup N        one unrecorded TCP run of N seconds per variant first
                    (default 2; 0 skips it)
  --out DIR         where the JSON, its schema, the Markdown report and the SVG
                    charts go (default bench-results/)

Brings up a two-node lab per backend and per hand-built equal (host-gw and
bgp: routes by hand; vxlan and udp: a kernel VXLAN device by hand), and
measures pod to pod, and node to node over the bare underlay: TCP with 1 and
4 streams, UDP at the highest rate the sender reaches, ping idle and under a
TCP stream, and sockperf ping-pong, with the CPU per Gbit (system-wide,
softirq, the agent's) and the agents' and BIRD's memory. Every figure is a
median with its min-max, a ratio to the bare underlay and to the hand-built
equal; the report ends with the CPU ordering it measured. Progress goes to
stderr, the Markdown report to stdout. Needs root, iperf3 and sockperf.`;

/** Backends named by --backends, each once, in the order given. */
export function parseBackends(text: string): BackendType[] {
  const names = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new WeftError('--backends is empty', `name one or more of ${BACKEND_TYPES.join(', ')}`);
  for (const name of names) {
    if (!(BACKEND_TYPES as readonly string[]).includes(name)) throw new WeftError(`--backends: unknown backend "${name}"`, `use any of ${BACKEND_TYPES.join(', ')}, comma-separated`);
  }
  return [...new Set(names)] as BackendType[];
}

/** From a run's figures to the files: the one place the runner meets the analysis and the writers. */
async function report(raw: RawCompare, outDir: string): Promise<{ markdown: string; written: string[] }> {
  const paths = await writeCompareOutputs(analyse(raw), outDir);
  return { markdown: await readFile(paths.markdown, 'utf8'), written: [paths.json, paths.schema, paths.markdown, ...paths.charts] };
}

export async function run(argv: string[]): Promise<number> {
  const values = parseCommand(
    argv,
    {
      backends: { type: 'string', default: BACKEND_TYPES.join(',') },
      reps: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '2' },
      out: { type: 'string', default: 'bench-results' },
    },
    COMPARE_HELP,
  );
  if (!values) return 0;
  const backends = parseBackends(values.backends ?? '');
  const reps = wholeNumber(values.reps ?? '3', '--reps', 1);
  const seconds = wholeNumber(values.seconds ?? '5', '--seconds', 1);
  const warmupSeconds = wholeNumber(values.warmup ?? '2', '--warmup', 0);
  const log = (line: string): void => void process.stderr.write(`weft bench compare: ${line}\n`);
  if (reps < 3) log(`--reps ${reps}: the median and the spread need 3 repetitions; the figures are single samples`);
  // Interrupted: exit; the next run removes the labs this one left.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
  const raw = await runCompare({ backends, reps, seconds, warmupSeconds, log });
  const { markdown, written } = await report(raw, resolve(values.out ?? 'bench-results'));
  process.stdout.write(markdown.endsWith('\n') ? markdown : `${markdown}\n`);
  process.stdout.write(`\nwritten: ${written.join('\n         ')}\n`);
  return 0;
}
