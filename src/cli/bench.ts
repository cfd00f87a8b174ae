// `weft bench`: a backend against its hand-built equal, in one run.
import { resolve } from 'node:path';
import { parseCommand } from './flags.js';
import { formatMarkdown, writeReport } from '../bench/report.js';
import { runBench } from '../bench/runner.js';
import type { BackendType } from '../config/netconf.js';
import { WeftError } from '../errors.js';
import { TOPOLOGIES, parseIpFamily, type Topology } from '../lab/topology.js';
import { labNetConfFlags, labNetConfFrom } from './lab.js';

const HELP = `usage: weft bench --backend host-gw|vxlan|udp|bgp [flags]
       weft bench scale [--nodes 100,300,1000] [--joins 40] [--out DIR]   (see weft bench scale --help)
       weft bench bgp-scale [--clients 30] [--joins 5] [--out DIR]   (2 route reflectors, N clients; --help)
       weft bench compare [--backends LIST] [--reps 3] [--seconds 5] [--out DIR]   (backends, their hand-built
                          equals and the bare underlay: JSON, Markdown, SVG charts; --help)

  --reps N            repetitions per variant (default 3, at least 3 for a median worth reading)
  --seconds N         length of each iperf3 run (default 5)
  --topology T        flat or routed (default flat)
  --ip-family F       4, 6 or dual: the labs' address families and the pod addresses
                      measured (default 4); the hand-built equals are built over the
                      IPv6 underlay too; dual measures both in one run
  --net-conf FILE     the weft side's net-conf.json (default: Network 10.244.0.0/16,
                      with 6 also IPv6Network 2001:db8:1000::/56, the backend's defaults)
  --out DIR           where the JSON and Markdown reports go (default bench-results/;
                      one pair per family, the IPv6 one named ...-ipv6-...)

Runs iperf3 TCP pod to pod across two lab nodes, once with weft and once with
the same data path built by hand, alternating, and reports medians and ratios
per address family. vxlan is also compared with host-gw on the flat topology
(host-gw cannot cross the router of the routed one).
Needs root, like "weft lab".`;

export function wholeNumber(text: string, flag: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new WeftError(`${flag} "${text}" is not a whole number >= ${min}`, `pass e.g. ${flag} ${min}`);
  return n;
}

export async function run(argv: string[]): Promise<number> {
  if (argv[0] === 'scale') return (await import('./bench-scale.js')).run(argv.slice(1));
  if (argv[0] === 'bgp-scale') return (await import('./bench-bgp-scale.js')).run(argv.slice(1));
  if (argv[0] === 'compare') return (await import('./bench-compare.js')).run(argv.slice(1));
  const values = parseCommand(
    argv,
    {
      ...labNetConfFlags,
      reps: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '5' },
      topology: { type: 'string', default: 'flat' },
      out: { type: 'string', default: 'bench-results' },
    },
    HELP,
  );
  if (!values) return 0;
  const topology = values.topology ?? 'flat';
  if (!(TOPOLOGIES as readonly string[]).includes(topology)) throw new WeftError(`unknown topology "${topology}"`, `use ${TOPOLOGIES.join(' or ')}`);
  const families = parseIpFamily(values['ip-family'] ?? '4');
  // The weft side's net-conf, checked as its agents will check it.
  const { netConf } = labNetConfFrom({ backend: values.backend, file: values['net-conf'], families });
  const results = await runBench({
    backend: (netConf.Backend as { Type: BackendType }).Type,
    netConf,
    families,
    topology: topology as Topology,
    reps: wholeNumber(values.reps ?? '3', '--reps', 1),
    seconds: wholeNumber(values.seconds ?? '5', '--seconds', 1),
    log: (line) => process.stderr.write(`weft bench: ${line}\n`),
  });
  const written: string[] = [];
  for (const result of results) {
    const paths = await writeReport(result, resolve(values.out ?? 'bench-results'));
    written.push(paths.json, paths.markdown);
  }
  process.stdout.write(results.map(formatMarkdown).join('\n'));
  process.stdout.write(`\nwritten: ${written.join('\n         ')}\n`);
  return 0;
}
