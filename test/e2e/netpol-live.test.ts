// A NetworkPolicy change must not disturb traffic it does not concern: a
// policy allows x/b (n2) to reach x/a (n1); while a ping flow every 10 ms
// runs between them, 20 unrelated policy changes are made (policies on
// other pods of x/a's node, on other namespaces, some naming x/b as a peer),
// each waited for until every agent has it in the kernel. The flow must
// lose no packet. One backend (vxlan, lab np5): the rules are the same
// nftables table on every backend; netpol.test.ts covers the four.
import t from 'tap';
import { startKubeLab } from './support/kube-lab.js';
import { NetpolWorld } from './support/netpol-cluster.js';
import { MATRIX_PORTS, Reachability, mismatches, renderGrids } from './support/netpol-truth.js';
import { until } from './support/lab-fixture.js';
import { PingFlow } from './support/watched-process.js';

if (process.getuid?.() !== 0) {
  t.fail('the NetworkPolicy live-change test needs root (network namespaces); run it as root');
  process.exit(1);
}

const policy = (namespace: string, name: string, spec: Record<string, unknown>) => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace, name }, spec });

/** Twenty changes that concern neither x/a's ingress nor x/b's egress. */
function unrelatedChanges(world: NetpolWorld): (() => Promise<void>)[] {
  const changes: (() => Promise<void>)[] = [];
  for (let i = 0; i < 5; i++) {
    // On x/a's node (n1): y/c and z/b; the second names x/b as a peer, so x/b's address joins more sets.
    changes.push(() => world.applyPolicy(policy('y', `churn-yc-${i}`, { podSelector: { matchLabels: { pod: 'c' } }, ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ protocol: 'TCP', port: 80 + i }] }] })));
    changes.push(() => world.applyPolicy(policy('z', `churn-zb-${i}`, { podSelector: { matchLabels: { pod: 'b' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'x' } }, podSelector: { matchLabels: { pod: 'b' } } }] }] })));
  }
  for (let i = 0; i < 5; i++) {
    changes.push(() => world.deletePolicy('y', `churn-yc-${i}`));
    changes.push(() => world.applyPolicy(policy('x', `churn-xc-${i}`, { podSelector: { matchLabels: { pod: 'c' } }, policyTypes: ['Egress'], egress: [{ ports: [{ protocol: 'UDP', port: 53 + i }] }] })));
  }
  return changes;
}

t.test('a flow that a policy allows loses no packet while 20 unrelated policies change', async (t) => {
  const kube = await startKubeLab(t, { name: 'np5', nodes: 3, backend: 'vxlan' });
  const world = await NetpolWorld.create(kube.lab, { api: kube.api });
  t.teardown(() => world.close());

  await world.applyPolicy(policy('x', 'a-from-b', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] }));
  await world.settle();
  const flow = PingFlow.start(world.pod('x/b').ns, world.pod('x/a').ip, { intervalS: 0.01 });
  t.teardown(() => void flow.stop());
  await until('the ping flow x/b -> x/a to answer', async () => flow.replies >= 20);

  const changes = unrelatedChanges(world);
  for (const change of changes) {
    await change();
    await world.settle();
  }
  const after = flow.lastSeq;
  await until('the flow to go on after the changes', async () => flow.lastSeq >= after + 20);
  const result = await flow.stop();
  t.same(result.lost, [], `${changes.length} unrelated policy changes: ${result.transmitted} pings sent, none lost (${result.received} answered)`);

  // The policies were in force: x/a takes x/b only, so does z/b (churn-zb-*), x/c sends nothing on 80 and 81 (churn-xc-*).
  const expected = new Reachability(world.podIds(), MATRIX_PORTS).deny('*', 'x/a').allow('x/b', 'x/a').deny('*', 'z/b').allow('x/b', 'z/b').deny('x/c', '*');
  const probed = await world.probe(expected);
  const wrong = mismatches(expected, probed.observed);
  if (wrong.length > 0) t.comment(renderGrids(expected, probed.observed));
  t.same(wrong, [], 'after the changes the matrix is what the remaining policies say');
});
