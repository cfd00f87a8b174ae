// The bgp-scale benchmark's arithmetic: BIRD's memory total, percentiles of
// join times, the per-session and per-route costs and the 1000-node figures.
import t from 'tap';
import { formatBgpScaleMarkdown, memoryModel, parseBirdMemoryTotal, project, type BgpScaleResult, type Point, type RoleFigures } from '../../src/bench/bgp-scale.js';
import { percentile } from '../../src/bench/stats.js';

const SHOW_MEMORY = `BIRD 2.0.12 ready.
BIRD memory usage
                  Effective    Overhead
Routing tables:     27.9 kB   4848.0  B
Route attributes:   15.8 kB   8680.0  B
Protocols:         239.6 kB    163.0 kB
Current config:     73.9 kB   1064.0  B
Standby memory:      0.0  B     40.0 kB
Total:             390.5 kB    221.3 kB
`;

const role = (sessions: number, routes: number, birdBytes: number, rssKiB: number): RoleFigures => ({ nodes: 1, sessions: { min: sessions, max: sessions }, routes, birdBytes, rssKiB });

t.test('show memory: the Total row, effective plus overhead, in bytes', async (t) => {
  t.equal(parseBirdMemoryTotal(SHOW_MEMORY), Math.round((390.5 + 221.3) * 1024));
  t.equal(parseBirdMemoryTotal('Total:  2.5 MB  512  B\n'), Math.round(2.5 * 1024 * 1024 + 512));
  t.equal(parseBirdMemoryTotal('BIRD 2.0.12 ready.\n'), undefined, 'no Total row: undefined');
});

t.test('percentile: nearest rank over the joins seen, missing ones left out', async (t) => {
  t.same([percentile([900, 1200, null, 2500, 1000], 50), percentile([900, 1200, null, 2500, 1000], 100), percentile([null], 50)], [1000, 2500, NaN]);
});

t.test('memory model: per session from client and reflector side by side, per route from the extra routes; 1000 nodes from the last point', async (t) => {
  // A BIRD costs 100 kB, a session 2 kB plus 100 B per route it exports, a route 150 B.
  const bird = (sessions: number, routes: number): number => 100_000 + sessions * (2000 + 100 * routes) + 150 * routes;
  const point = (label: string, sessions: number, routes: number): Point => ({
    label,
    nodes: sessions + 1,
    client: role(2, routes, bird(2, routes), bird(2, routes) / 1024),
    reflector: role(sessions, routes, bird(sessions, routes), bird(sessions, routes) / 1024),
  });
  const few = point('few', 36, 35);
  const many = point('many', 37, 999);
  const model = memoryModel(few, many);
  t.same(
    { perSessionFewRoutes: model.perSessionFewRoutes.birdBytes, perSession: model.perSession.birdBytes, perRoute: model.perRoute.birdBytes },
    { perSessionFewRoutes: 2000 + 100 * 35, perSession: 2000 + 100 * 999, perRoute: 150 + 2 * 100 },
    'each cost as built into the numbers',
  );
  t.same(project(many.reflector, model, 999, 999).birdBytes, bird(999, 999), 'a reflector at 1000 nodes, linear in sessions at its route count');
});

t.test('the Markdown report names the figures and says the 1000-node ones are extrapolated', async (t) => {
  const p = (label: string): Point => ({ label, nodes: 32, client: role(2, 31, 200_000, 4800), reflector: role(31, 31, 600_000, 5600) });
  const r: BgpScaleResult = {
    startedAt: '2026-01-01T00:00:00.000Z',
    host: { cpus: 2, kernel: 'k', loadavg: { start: 1, end: 2 } },
    clients: 30,
    reflectors: 2,
    join: { samplesMs: [1000, null], p50Ms: 1000, maxMs: 1000, targetMs: 3000 },
    bulk: { routes: 965, toEveryKernelMs: 4000 },
    points: [p('start'), p('after 5 joins'), p('+ 965 extra routes')],
    model: { perSessionFewRoutes: { birdBytes: 7000, rssKiB: 10 }, perSession: { birdBytes: 100_000, rssKiB: 100 }, perRoute: { birdBytes: 150, rssKiB: 0.1 } },
    at1000: { client: { sessions: 2, routes: 999, birdBytes: 300_000, rssKiB: 5000 }, reflector: { sessions: 999, routes: 999, birdBytes: 100_000_000, rssKiB: 100_000 } },
    notes: ['a note'],
  };
  const md = formatBgpScaleMarkdown(r);
  t.match(md, /\| 2 \| 1000 \| 1000 \| 3000 \| 1000, not seen \|/, 'the join row: p50, max, target, each sample');
  t.match(md, /\| reflector \| 999 \| 999 \| 97656\.3 \| 97\.7 \|/, 'the 1000-node reflector row in kB and MiB');
  t.match(md, /extrapolated linearly/, 'says how the 1000-node figures were made');
});
