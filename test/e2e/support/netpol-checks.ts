// Two checks of the NetworkPolicy matrix that are not truth-table cases, run
// in the matrix's own labs (netpol.test.ts) rather than labs of their own:
// the probes judged without any policy engine (hand-written nft drops), and
// a flow that a policy allows losing nothing while unrelated policies change.
import { performance } from 'node:perf_hooks';
import { until } from './lab-fixture.js';
import type { NetpolWorld } from './netpol-cluster.js';
import type { StepOutcome } from './netpol-cases.js';
import { MATRIX_PORTS, Reachability, mismatches, renderGrids } from './netpol-truth.js';
import { PingFlow } from './watched-process.js';

/**
 * No policy, and drops written by hand in a table of the test's own on
 * x/a's node: the probes must see exactly those pairs denied. This is what
 * makes a denial the matrix reports trustworthy.
 */
export async function probesSeeHandDrops(world: NetpolWorld): Promise<StepOutcome> {
  const started = performance.now();
  const xa = world.pod('x/a');
  const table = ['table inet npdev {', ' chain forward {', '  type filter hook forward priority 0; policy accept;',
    `  ip daddr ${xa.ip} tcp dport 80 drop`, `  ip daddr ${xa.ip} udp dport 81 drop`, `  ip daddr ${xa.ip} sctp dport 81 drop`, ' }', '}'].join('\n');
  await world.lab.exec(xa.node, ['nft', '-f', '-'], { input: table + '\n' });
  try {
    const expected = new Reachability(world.podIds(), MATRIX_PORTS).deny('*', 'x/a', ['TCP/80', 'UDP/81', 'SCTP/81']);
    const { observed, reprobed } = await world.probe(expected);
    return { name: 'no policy, hand-written nft drops on x/a\'s node: exactly TCP/80, UDP/81 and SCTP/81 to x/a fail', problems: mismatches(expected, observed), grids: renderGrids(expected, observed), reprobed, ms: Math.round(performance.now() - started) };
  } finally {
    await world.lab.exec(xa.node, ['nft', 'delete', 'table', 'inet', 'npdev'], { check: false });
  }
}

const policy = (namespace: string, name: string, spec: Record<string, unknown>) => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace, name }, spec });

/** Twenty changes that concern neither x/a's ingress nor x/b's egress (some name x/b as a peer, so its address joins more sets). */
function unrelatedChanges(world: NetpolWorld): (() => Promise<void>)[] {
  const changes: (() => Promise<void>)[] = [];
  for (let i = 0; i < 5; i++) {
    changes.push(() => world.applyPolicy(policy('y', `churn-yc-${i}`, { podSelector: { matchLabels: { pod: 'c' } }, ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ protocol: 'TCP', port: 80 + i }] }] })));
    changes.push(() => world.applyPolicy(policy('z', `churn-zb-${i}`, { podSelector: { matchLabels: { pod: 'b' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'x' } }, podSelector: { matchLabels: { pod: 'b' } } }] }] })));
  }
  for (let i = 0; i < 5; i++) {
    changes.push(() => world.deletePolicy('y', `churn-yc-${i}`));
    changes.push(() => world.applyPolicy(policy('x', `churn-xc-${i}`, { podSelector: { matchLabels: { pod: 'c' } }, policyTypes: ['Egress'], egress: [{ ports: [{ protocol: 'UDP', port: 53 + i }] }] })));
  }
  return changes;
}

/**
 * A policy allows x/b (n2) to reach x/a (n1); a ping every 10 ms runs
 * between them while 20 unrelated changes are made, each waited for on
 * every agent. Problems: any lost ping, and a matrix after the changes that
 * is not what the remaining policies say. Leaves its policies for reset().
 */
export async function flowThroughChurn(world: NetpolWorld): Promise<StepOutcome & { pings: string }> {
  const started = performance.now();
  await world.applyPolicy(policy('x', 'a-from-b', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] }));
  await world.settle();
  const flow = PingFlow.start(world.pod('x/b').ns, world.pod('x/a').ip, { intervalS: 0.01 });
  let result: Awaited<ReturnType<PingFlow['stop']>>;
  try {
    await until('the ping flow x/b -> x/a to answer', async () => flow.replies >= 20);
    const changes = unrelatedChanges(world);
    for (const change of changes) {
      await change();
      await world.settle();
    }
    const after = flow.lastSeq;
    await until('the flow to go on after the changes', async () => flow.lastSeq >= after + 20);
  } finally {
    result = await flow.stop();
  }
  // x/a takes x/b only, so does z/b (churn-zb-*), x/c sends nothing on 80 and 81 (churn-xc-*).
  const expected = new Reachability(world.podIds(), MATRIX_PORTS).deny('*', 'x/a').allow('x/b', 'x/a').deny('*', 'z/b').allow('x/b', 'z/b').deny('x/c', '*');
  const { observed, reprobed } = await world.probe(expected);
  const lost = result.lost.length ? [`${result.lost.length} of ${result.transmitted} pings lost: ${result.lost.slice(0, 10).join(', ')}`] : [];
  return {
    name: 'a ping flow x/b -> x/a that a policy allows loses nothing while 20 unrelated policies change, and the matrix is what the remaining policies say',
    problems: [...lost, ...mismatches(expected, observed)],
    grids: renderGrids(expected, observed),
    reprobed,
    ms: Math.round(performance.now() - started),
    pings: `${result.transmitted} pings sent, ${result.received} answered`,
  };
}
