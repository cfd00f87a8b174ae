// The bgp benchmark plan: weft bgp against routes written by hand.
import t from 'tap';
import { benchPlan } from '../../src/bench/variants.js';

t.test('bgp is measured against hand-built routes', async (t) => {
  const plan = benchPlan('bgp');
  t.equal(plan.subject.label, 'weft bgp');
  t.same(plan.baselines.map((b) => b.label), ['hand-built routes']);
});

t.test('bgp on the routed lab topology is refused in one line', async (t) => {
  t.throws(() => benchPlan('bgp', undefined, 'routed'), { name: 'WeftError', message: /^bgp across a router needs .*; use --topology flat$/ });
});
