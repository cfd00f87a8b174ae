// `weft bench bgp-scale`: the bgp backend with route reflectors at the size of
// a real cluster's rack, and its memory worked out for 1000 nodes.
import { resolve } from 'node:path';
import { parseCommand } from './flags.js';
import { formatBgpScaleMarkdown, runBgpScale, writeBgpScaleReport } from '../bench/bgp-scale.js';
import { wholeNumber } from './bench.js';

const HELP = `usage: weft bench bgp-scale [--clients 30] [--joins 5] [--name bgpscale] [--out DIR]

  --clients N   route-reflector clients besides the 2 reflectors (default 30)
  --joins N     nodes that join one after another, each timed (default 5)
  --name NAME   the lab's name (default bgpscale; namespaces wl-NAME-*)
  --out DIR     where the JSON and Markdown reports go (default bench-results/)

Brings up a lab of 2 route reflectors and N clients, every node a weft agent
with its own BIRD, and reports: the time from a joining node's lease in etcd
to its route in every other kernel (p50 and max over the joins); the BGP
sessions per client and per reflector; BIRD's memory per node (its own
\`show memory\` and its RSS); and the same for 1000 nodes, extrapolated
linearly from the cost of one more session and one more route, measured
from the joins and from a throwaway BIRD that makes every node carry about
1000 routes. Needs root, like "weft lab".`;

export async function run(argv: string[]): Promise<number> {
  const values = parseCommand(
    argv,
    {
      clients: { type: 'string', default: '30' },
      joins: { type: 'string', default: '5' },
      name: { type: 'string', default: 'bgpscale' },
      out: { type: 'string', default: 'bench-results' },
    },
    HELP,
  );
  if (!values) return 0;
  const result = await runBgpScale({
    clients: wholeNumber(values.clients ?? '30', '--clients', 1),
    joins: wholeNumber(values.joins ?? '5', '--joins', 1),
    name: values.name ?? 'bgpscale',
    log: (line) => process.stderr.write(`weft bench bgp-scale: ${line}\n`),
  });
  const paths = await writeBgpScaleReport(result, resolve(values.out ?? 'bench-results'));
  process.stdout.write(formatBgpScaleMarkdown(result));
  process.stdout.write(`\nwritten: ${paths.json}\n         ${paths.markdown}\n`);
  return 0;
}
