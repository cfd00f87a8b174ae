// `weft bench scale`: the etcd control plane and one node's reconciler at N nodes.
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { WeftError } from '../errors.js';
import { formatScaleMarkdown, writeScaleReport } from '../bench/scale/report.js';
import { runScale, type ScaleResult } from '../bench/scale/run.js';
import { wholeNumber } from './bench.js';
import { parseCommand } from './flags.js';

export const SCALE_HELP = `usage: weft bench scale [--nodes 100,300,1000] [--joins 40] [--out DIR]

  --nodes LIST   cluster sizes to measure, comma-separated (default 100,300,1000)
  --joins N      nodes joining at 10 per second at each size (default 40)
  --backend B    vxlan or host-gw: the simulated nodes' backend (default vxlan)
  --out DIR      where the JSON and Markdown reports go (default bench-results/)

Per size N: starts a real etcd on loopback and N simulated nodes in a few
worker processes, each node the agent's real lease, renewal (30 s TTL) and
watch code over its own etcd client, recomputing the backend's desired state
on every lease event, without a kernel. Measures how long a join takes to
reach every node, etcd's own request and byte counts per change, and the
nodes' memory and CPU. Then programs one real network namespace for N-1
peers with the real reconciler, on host-gw and on vxlan. Needs root and the
etcd-server package.`;

const NAMESPACE = 'wl-scb-node';

export async function run(argv: string[]): Promise<number> {
  const values = parseCommand(
    argv,
    {
      nodes: { type: 'string', default: '100,300,1000' },
      joins: { type: 'string', default: '40' },
      backend: { type: 'string', default: 'vxlan' },
      out: { type: 'string', default: 'bench-results' },
    },
    SCALE_HELP,
  );
  if (!values) return 0;
  const sizes = (values.nodes ?? '').split(',').map((s) => wholeNumber(s.trim(), '--nodes', 2));
  const joins = wholeNumber(values.joins ?? '40', '--joins', 1);
  const backend = values.backend;
  if (backend !== 'vxlan' && backend !== 'host-gw') throw new WeftError(`--backend "${backend}" is not simulated here`, 'use --backend vxlan or --backend host-gw');
  if (process.getuid?.() !== 0) throw new WeftError('weft bench scale needs root (it programs a network namespace)', 'run it as root');
  // Interrupted: exit so the etcd started here dies with us; the next run removes the rest.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
  const log = (line: string) => process.stderr.write(`weft bench scale: ${line}\n`);
  const host = `${cpus().length} CPUs (load average ${loadavg()[0]!.toFixed(1)} at the start)`;
  const results: ScaleResult[] = [];
  for (const nodes of sizes) {
    results.push(await runScale({ nodes, joins, backend, netns: NAMESPACE, log }));
  }
  const paths = await writeScaleReport(results, resolve(values.out ?? 'bench-results'), host);
  process.stdout.write(formatScaleMarkdown(results, host));
  process.stdout.write(`\nwritten: ${paths.json}\n         ${paths.markdown}\n`);
  return 0;
}
