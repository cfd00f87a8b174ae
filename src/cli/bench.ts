// `weft bench`: a backend against its hand-built equal, in one run.
import { checkBackendOptions } from '../../backends/registry.js';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { formatMarkdown, writeReport } from '../bench/report.js';
import { runBench } from '../bench/runner.js';
import { BACKEND_TYPES, type BackendType } from '../config/netconf.js';
import { parseNetConf, readNetConfFile } from '../config/parse.js';
import { WeftError } from '../errors.js';
import { TOPOLOGIES, type Topology } from '../lab/topology.js';

const HELP = `usage: weft bench --backend host-gw|vxlan|udp|bgp [flags]

  --reps N            repetitions per variant (default 3, at least 3 for a median worth reading)
  --seconds N         length of each iperf3 run (default 5)
  --topology T        flat or routed (default flat)
  --net-conf FILE     the weft side's net-conf.json (default: Network 10.244.0.0/16, the backend's defaults)
  --out DIR           where the JSON and Markdown reports go (default bench-results/)

Runs iperf3 TCP pod to pod across two lab nodes, once with weft and once with
the same data path built by hand, alternating, and reports medians and ratios.
vxlan is also compared with host-gw on the flat topology (host-gw cannot cross
the router of the routed one).
Needs root, like "weft lab".`;

function wholeNumber(text: string, flag: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new WeftError(`${flag} "${text}" is not a whole number >= ${min}`, `pass e.g. ${flag} ${min}`);
  return n;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      backend: { type: 'string', default: 'host-gw' },
      reps: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '5' },
      topology: { type: 'string', default: 'flat' },
      'net-conf': { type: 'string' },
      out: { type: 'string', default: 'bench-results' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  const backend = values.backend ?? 'host-gw';
  if (!(BACKEND_TYPES as readonly string[]).includes(backend)) throw new WeftError(`unknown backend "${backend}"`, `use one of ${BACKEND_TYPES.join(', ')}`);
  const topology = values.topology ?? 'flat';
  if (!(TOPOLOGIES as readonly string[]).includes(topology)) throw new WeftError(`unknown topology "${topology}"`, `use ${TOPOLOGIES.join(' or ')}`);
  let netConf: Record<string, unknown> | undefined;
  if (values['net-conf']) {
    const text = readNetConfFile(values['net-conf']);
    const parsed = checkBackendOptions(parseNetConf(text));
    if (parsed.backend.type !== backend) {
      throw new WeftError(`--net-conf has backend ${parsed.backend.type} but --backend is ${backend}`, 'make them agree');
    }
    netConf = JSON.parse(text) as Record<string, unknown>;
  }
  const result = await runBench({
    backend: backend as BackendType,
    netConf,
    topology: topology as Topology,
    reps: wholeNumber(values.reps ?? '3', '--reps', 1),
    seconds: wholeNumber(values.seconds ?? '5', '--seconds', 1),
    log: (line) => process.stderr.write(`weft bench: ${line}\n`),
  });
  const paths = await writeReport(result, resolve(values.out ?? 'bench-results'));
  process.stdout.write(formatMarkdown(result));
  process.stdout.write(`\nwritten: ${paths.json}\n         ${paths.markdown}\n`);
  return 0;
}
