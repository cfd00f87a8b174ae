// The NetworkPolicy reachability matrix (issue 13) on every backend: four
// kube-mode labs (host-gw, vxlan, udp, bgp; np1..np4), three nodes each, the
// x/y/z a/b/c layout of support/netpol-cluster.ts registered in each lab's
// stand-in API server. Every case of support/netpol-cases.ts runs on every
// lab: its objects applied, every agent waited for until its
// weft_policy_resource_version covers them, then TCP, UDP and SCTP probes
// on ports 80 and 81 between all 72 ordered pod pairs compared with the
// case's truth table, written by hand. The labs run side by side in this
// one process (the suite's time budget); results are asserted afterwards,
// one assertion per case step and backend. In the same labs: the probes
// judged against hand-written nft drops (host-gw, before any policy) and a
// ping flow that must lose nothing while unrelated policies change (vxlan,
// after the cases); support/netpol-checks.ts.
import t from 'tap';
import { performance } from 'node:perf_hooks';
import type { BackendType } from '../../src/config/netconf.js';
import { startKubeLab } from './support/kube-lab.js';
import { NetpolWorld } from './support/netpol-cluster.js';
import { netpolCases, runCase, type StepOutcome } from './support/netpol-cases.js';
import { flowThroughChurn, probesSeeHandDrops } from './support/netpol-checks.js';

const ALL_BACKENDS: { backend: BackendType; lab: string }[] = [
  { backend: 'host-gw', lab: 'np1' },
  { backend: 'vxlan', lab: 'np2' },
  { backend: 'udp', lab: 'np3' },
  { backend: 'bgp', lab: 'np4' },
];
/** WEFT_NETPOL_BACKENDS=host-gw,udp narrows a run by hand while working on one backend; CI runs all four. */
const only = process.env.WEFT_NETPOL_BACKENDS?.split(',');
const BACKENDS = only ? ALL_BACKENDS.filter((b) => only.includes(b.backend)) : ALL_BACKENDS;

if (process.getuid?.() !== 0) {
  t.fail('the NetworkPolicy matrix needs root (network namespaces); run it as root');
  process.exit(1);
}

t.test('NetworkPolicy matrix on host-gw, vxlan, udp and bgp', async (t) => {
  const started = performance.now();
  const runs = await Promise.all(
    BACKENDS.map(async ({ backend, lab: name }) => {
      const kube = await startKubeLab(t, { name, nodes: 3, backend });
      const world = await NetpolWorld.create(kube.lab, { api: kube.api });
      t.teardown(() => world.close());
      const readyAt = performance.now();
      const outcomes: StepOutcome[] = [];
      if (backend === 'host-gw') outcomes.push(await probesSeeHandDrops(world));
      for (const c of netpolCases()) outcomes.push(...(await runCase(world, c)));
      if (backend === 'vxlan') {
        const live = await flowThroughChurn(world);
        t.comment(`vxlan live change: ${live.pings}`);
        outcomes.push(live);
      }
      const failed = outcomes.filter((o) => o.problems.length > 0);
      const tails = failed.length > 0 ? await kube.logTails(5) : '';
      return { backend, outcomes, setupMs: Math.round(readyAt - started), casesMs: Math.round(performance.now() - readyAt), tails };
    }),
  );

  for (const run of runs) {
    const passed = run.outcomes.filter((o) => o.problems.length === 0).length;
    const sum = (f: (o: StepOutcome) => number | undefined): number => run.outcomes.reduce((n, o) => n + (f(o) ?? 0), 0);
    t.comment(`${run.backend}: ${passed}/${run.outcomes.length} steps as expected; lab ready after ${run.setupMs} ms, cases ${run.casesMs} ms (changes and waits for the agents ${sum((o) => o.settleMs)} ms, probes ${sum((o) => o.probeMs)} ms), ${sum((o) => o.reprobed)} probes re-probed`);
    for (const o of run.outcomes) {
      if (o.problems.length > 0 && o.grids) t.comment(`${run.backend} / ${o.name}:\n${o.grids}`);
      t.same(o.problems, [], `${run.backend}: ${o.name} (${o.ms} ms)`);
    }
    if (run.tails) t.comment(`${run.backend} logs:\n${run.tails}`);
  }
  t.comment(`all four backends: ${Math.round(performance.now() - started)} ms`);
});
