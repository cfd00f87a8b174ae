// The NetworkPolicy matrix's cases, modelled on upstream's suite
// (kubernetes test/e2e/network/netpol/network_policy.go), written afresh for
// the x/y/z a/b/c layout of netpol-cluster.ts: x/a x/b x/c on n1 n2 n3,
// y/a y/b y/c on n2 n3 n1, z/a z/b z/c on n3 n1 n2. Each case is steps;
// a step changes the API (policies, labels, pods), then states by hand what
// the full matrix must be. The same cases run on every backend.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { echoesIn, startEchoFlow, stopGroup } from './netpol-probe.js';
import { nsLabels, podLabels, type NetpolWorld } from './netpol-cluster.js';
import { MATRIX_PORTS, Reachability, mismatches, renderGrids, type PortKey } from './netpol-truth.js';

type Spec = Record<string, unknown>;
interface Policy {
  apiVersion: 'networking.k8s.io/v1';
  kind: 'NetworkPolicy';
  metadata: { namespace: string; name: string };
  spec: Spec;
}

export interface NetpolStep {
  /** What this step does, when the case has several. */
  label?: string;
  change(w: NetpolWorld): Promise<void>;
  /** The matrix after the change, starting from all allowed. */
  expect(r: Reachability, w: NetpolWorld): void;
  /** A check beyond the matrix (run after it); returns what is wrong, empty when all is well. */
  check?(w: NetpolWorld): Promise<string[]>;
}

export interface NetpolCase {
  name: string;
  /** Probed beyond MATRIX_PORTS, e.g. "UDP/53". */
  ports?: PortKey[];
  steps: NetpolStep[];
}

function policy(namespace: string, name: string, spec: Spec): Policy {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace, name }, spec };
}

const pod = (name: string): Spec => ({ matchLabels: { pod: name } });
const ns = (name: string): Spec => ({ matchLabels: { ns: name } });

/** Applies each policy (a function of the world when it needs pod addresses or node subnets). */
function apply(...policies: (Policy | ((w: NetpolWorld) => Policy))[]): (w: NetpolWorld) => Promise<void> {
  return async (w) => {
    for (const p of policies) await w.applyPolicy(typeof p === 'function' ? p(w) : p);
  };
}

/** A case of one step: these policies, this matrix. */
function single(name: string, policies: (Policy | ((w: NetpolWorld) => Policy))[], expect: NetpolStep['expect'], ports?: PortKey[]): NetpolCase {
  return { name, ...(ports ? { ports } : {}), steps: [{ change: apply(...policies), expect }] };
}

const ip32 = (w: NetpolWorld, id: string): string => `${w.pod(id).ip}/32`;
const subnetOf = (w: NetpolWorld, node: string): string => w.lab.node(node).subnet!;

/** The cases, fresh for each world (a case may keep state between its steps). */
export function netpolCases(): NetpolCase[] {
  return [
    // --- isolation ----------------------------------------------------------------
    single('default-deny ingress in x', [policy('x', 'deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] })], (r) => r.deny('*', 'x/*')),
    single('default-deny ingress and egress in x', [policy('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })], (r) => r.deny('*', 'x/*').deny('x/*', '*')),
    single('a policy that selects no pod changes nothing', [policy('x', 'selects-nobody', { podSelector: pod('nobody'), policyTypes: ['Ingress', 'Egress'] })], () => {}),
    single(
      'deny ingress from other namespaces (from: podSelector {})',
      [policy('x', 'same-ns-only', { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] })],
      (r) => r.deny('*', 'x/*').allow('x/*', 'x/*'),
    ),

    // --- pod and namespace selectors --------------------------------------------------
    single('ingress to x/a from x/b by podSelector', [policy('x', 'a-from-b', { podSelector: pod('a'), ingress: [{ from: [{ podSelector: pod('b') }] }] })], (r) =>
      r.deny('*', 'x/a').allow('x/b', 'x/a'),
    ),
    single(
      'ingress to x/a from every namespace (namespaceSelector {})',
      [policy('x', 'a-from-all-ns', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: {} }] }] })],
      () => {},
    ),
    single('ingress to x/a only from namespace y (matchLabels)', [policy('x', 'a-from-y', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: ns('y') }] }] })], (r) =>
      r.deny('*', 'x/a').allow('y/*', 'x/a'),
    ),
    single(
      'podSelector OR namespaceSelector (two peers)',
      [
        policy('x', 'a-from-b-or-other-ns', {
          podSelector: pod('a'),
          ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'NotIn', values: ['x'] }] } }, { podSelector: pod('b') }] }],
        }),
      ],
      (r) => r.deny('x/*', 'x/a').allow('x/b', 'x/a'),
    ),
    single(
      'podSelector AND namespaceSelector (one peer)',
      [
        policy('x', 'a-from-b-in-other-ns', {
          podSelector: pod('a'),
          ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'NotIn', values: ['x'] }] }, podSelector: pod('b') }] }],
        }),
      ],
      (r) => r.deny('*', 'x/a').allow(['y/b', 'z/b'], 'x/a'),
    ),
    single(
      'pods b or c in namespaces y or z (In on both selectors)',
      [
        policy('x', 'a-from-bc-in-yz', {
          podSelector: pod('a'),
          ingress: [
            {
              from: [
                {
                  namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'In', values: ['y', 'z'] }] },
                  podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['b', 'c'] }] },
                },
              ],
            },
          ],
        }),
      ],
      (r) => r.deny('*', 'x/a').allow(['y/b', 'y/c', 'z/b', 'z/c'], 'x/a'),
    ),
    single(
      'Exists selects the targets, NotIn the sources',
      [
        policy('y', 'not-from-a', {
          podSelector: { matchExpressions: [{ key: 'pod', operator: 'Exists' }] },
          ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchExpressions: [{ key: 'pod', operator: 'NotIn', values: ['a'] }] } }] }],
        }),
      ],
      (r) => r.deny('*', 'y/*').allow(['*/b', '*/c'], 'y/*'),
    ),
    single(
      'DoesNotExist: every x pod isolated, no source matches',
      [
        policy('x', 'from-unlabelled', {
          podSelector: { matchExpressions: [{ key: 'role', operator: 'DoesNotExist' }] },
          ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'pod', operator: 'DoesNotExist' }] } }] }],
        }),
      ],
      (r) => r.deny('*', 'x/*'),
    ),

    // --- ports and protocols --------------------------------------------------------
    single('any TCP port (protocol without port)', [policy('x', 'a-any-tcp', { podSelector: pod('a'), ingress: [{ ports: [{ protocol: 'TCP' }] }] })], (r) =>
      r.deny('*', 'x/a').allow('*', 'x/a', 'TCP/*'),
    ),
    single('UDP 81 only: TCP 81 stays denied', [policy('x', 'a-udp-81', { podSelector: pod('a'), ingress: [{ ports: [{ protocol: 'UDP', port: 81 }] }] })], (r) =>
      r.deny('*', 'x/a').allow('*', 'x/a', 'UDP/81'),
    ),
    single('SCTP 80 only: not taken for TCP', [policy('x', 'a-sctp-80', { podSelector: pod('a'), ingress: [{ ports: [{ protocol: 'SCTP', port: 80 }] }] })], (r) =>
      r.deny('*', 'x/a').allow('*', 'x/a', 'SCTP/80'),
    ),
    single('named port serve-81-tcp (ingress)', [policy('x', 'a-named-81', { podSelector: pod('a'), ingress: [{ ports: [{ port: 'serve-81-tcp' }] }] })], (r) =>
      r.deny('*', 'x/a').allow('*', 'x/a', 'TCP/81'),
    ),
    single(
      'named port serve-81-sctp (egress, resolved on each destination)',
      [policy('x', 'a-egress-named-sctp', { podSelector: pod('a'), policyTypes: ['Egress'], egress: [{ ports: [{ protocol: 'SCTP', port: 'serve-81-sctp' }] }] })],
      (r) => r.deny('x/a', '*').allow('x/a', '*', 'SCTP/81'),
    ),
    single('endPort: TCP 81-90', [policy('x', 'a-tcp-81-90', { podSelector: pod('a'), ingress: [{ ports: [{ protocol: 'TCP', port: 81, endPort: 90 }] }] })], (r) =>
      r.deny('*', 'x/a').allow('*', 'x/a', 'TCP/81'),
    ),

    // --- unions and directions --------------------------------------------------------
    single(
      'two ingress policies whose union allows y and z',
      [
        policy('x', 'a-from-y', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: ns('y') }] }] }),
        policy('x', 'a-from-z', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: ns('z') }] }] }),
      ],
      (r) => r.deny('*', 'x/a').allow(['y/*', 'z/*'], 'x/a'),
    ),
    single(
      'two egress policies: allow-all wins over a narrower one',
      [
        policy('x', 'a-to-y', { podSelector: pod('a'), policyTypes: ['Egress'], egress: [{ to: [{ namespaceSelector: ns('y') }] }] }),
        policy('x', 'a-to-all', { podSelector: pod('a'), policyTypes: ['Egress'], egress: [{}] }),
      ],
      () => {},
    ),
    single(
      'default-deny egress in x with DNS (UDP 53) allowed',
      [policy('x', 'deny-egress-but-dns', { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ protocol: 'UDP', port: 53 }] }] })],
      (r) => r.deny('x/*', '*').allow('x/*', '*', 'UDP/53'),
      ['UDP/53'],
    ),
    single(
      'egress from x/a (n1) only to z/c on another node (n2)',
      [policy('x', 'a-to-zc', { podSelector: pod('a'), policyTypes: ['Egress'], egress: [{ to: [{ namespaceSelector: ns('z'), podSelector: pod('c') }] }] })],
      (r) => r.deny('x/a', '*').allow('x/a', 'z/c'),
    ),
    single(
      'ingress and egress in one policy',
      [
        policy('x', 'a-both', {
          podSelector: pod('a'),
          policyTypes: ['Ingress', 'Egress'],
          ingress: [{ from: [{ namespaceSelector: ns('y') }] }],
          egress: [{ to: [{ namespaceSelector: ns('z') }] }],
        }),
      ],
      (r) => r.deny('*', 'x/a').allow('y/*', 'x/a').deny('x/a', '*').allow('x/a', 'z/*'),
    ),
    single(
      'policyTypes absent: egress rules make it Ingress and Egress',
      [policy('x', 'a-implicit-types', { podSelector: pod('a'), egress: [{ to: [{ namespaceSelector: ns('y') }] }] })],
      (r) => r.deny('*', 'x/a').deny('x/a', '*').allow('x/a', 'y/*'),
    ),
    single(
      'policyTypes Ingress only: its egress rules are ignored',
      [
        policy('x', 'a-ingress-only', {
          podSelector: pod('a'),
          policyTypes: ['Ingress'],
          ingress: [{ from: [{ namespaceSelector: ns('y') }] }],
          egress: [{ to: [{ podSelector: pod('nobody') }] }],
        }),
      ],
      (r) => r.deny('*', 'x/a').allow('y/*', 'x/a'),
    ),

    // --- ipBlock ------------------------------------------------------------------------
    single(
      "ipBlock with except: n2's pod CIDR but not y/a",
      [(w) => policy('x', 'a-from-n2-but-ya', { podSelector: pod('a'), ingress: [{ from: [{ ipBlock: { cidr: subnetOf(w, 'n2'), except: [ip32(w, 'y/a')] } }] }] })],
      (r, w) => r.deny('*', 'x/a').allow(w.podsOn('n2').filter((id) => id !== 'y/a'), 'x/a'),
    ),

    // --- changes ----------------------------------------------------------------------------
    {
      name: 'a policy updated in place',
      steps: [
        { label: 'from x/b', change: apply(policy('x', 'a-ingress', { podSelector: pod('a'), ingress: [{ from: [{ podSelector: pod('b') }] }] })), expect: (r) => r.deny('*', 'x/a').allow('x/b', 'x/a') },
        { label: 'now from y', change: apply(policy('x', 'a-ingress', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: ns('y') }] }] })), expect: (r) => r.deny('*', 'x/a').allow('y/*', 'x/a') },
      ],
    },
    {
      name: 'a policy deleted',
      steps: [
        { label: 'default-deny ingress in x', change: apply(policy('x', 'deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] })), expect: (r) => r.deny('*', 'x/*') },
        { label: 'deleted', change: (w) => w.deletePolicy('x', 'deny-ingress'), expect: () => {} },
      ],
    },
    {
      name: 'a pod relabelled into and out of a peer set',
      steps: [
        { label: 'no client yet', change: apply(policy('x', 'a-from-clients', { podSelector: pod('a'), ingress: [{ from: [{ podSelector: { matchLabels: { role: 'client' } } }] }] })), expect: (r) => r.deny('*', 'x/a') },
        { label: 'x/c labelled role=client', change: (w) => w.labelPod('x/c', { ...podLabels('x/c'), role: 'client' }), expect: (r) => r.deny('*', 'x/a').allow('x/c', 'x/a') },
        { label: 'label removed', change: (w) => w.labelPod('x/c', podLabels('x/c')), expect: (r) => r.deny('*', 'x/a') },
      ],
    },
    {
      name: 'a pod deleted and recreated (new address)',
      steps: [
        { label: 'x/b allowed to x/a', change: apply(policy('x', 'a-from-b', { podSelector: pod('a'), ingress: [{ from: [{ podSelector: pod('b') }] }] })), expect: (r) => r.deny('*', 'x/a').allow('x/b', 'x/a') },
        { label: 'x/b deleted', change: (w) => w.deletePod('x/b'), expect: (r) => r.deny('*', 'x/a') },
        { label: 'x/b recreated', change: (w) => w.addPod('x/b'), expect: (r) => r.deny('*', 'x/a').allow('x/b', 'x/a') },
      ],
    },
    {
      name: 'a namespace relabelled into and out of a peer set',
      steps: [
        { label: 'no team yet', change: apply(policy('x', 'a-from-blue', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'blue' } } }] }] })), expect: (r) => r.deny('*', 'x/a') },
        { label: 'y labelled team=blue', change: (w) => w.labelNamespace('y', { ...nsLabels('y'), team: 'blue' }), expect: (r) => r.deny('*', 'x/a').allow('y/*', 'x/a') },
        { label: 'label removed', change: (w) => w.labelNamespace('y', nsLabels('y')), expect: (r) => r.deny('*', 'x/a') },
      ],
    },
    establishedConnectionCut(),
  ];
}

/**
 * x/a is isolated by a policy that takes everything (so n1's kernel tracks
 * connections: without a rule that uses conntrack there is no entry to
 * cut); a TCP flow x/b (n2) -> x/a (n1) port 80 starts; the policy is then
 * narrowed to nothing. The flow must stop getting echoes and its conntrack
 * entry on n1, where x/a's ingress is enforced, must be gone.
 */
function establishedConnectionCut(): NetpolCase {
  let flowPid = 0;
  let file = '';
  let sport = '';
  const flowEntries = async (w: NetpolWorld): Promise<string[]> => {
    const r = await w.lab.exec(w.pod('x/a').node, ['conntrack', '-L', '-p', 'tcp', '-s', w.pod('x/b').ip, '-d', w.pod('x/a').ip, '--dport', '80'], { check: false });
    return r.stdout.split('\n').filter((l) => l.includes('ESTABLISHED') && (!sport || l.includes(`sport=${sport} `)));
  };
  return {
    name: 'an established connection cut when newly denied',
    steps: [
      {
        label: 'x/a takes everything',
        change: apply(policy('x', 'a-ingress', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: {} }] }] })),
        expect: () => {},
      },
      {
        label: 'narrowed to nothing while x/b -> x/a:80 flows',
        change: async (w) => {
          file = join(w.dir, `flow-${Date.now()}.echo`);
          flowPid = startEchoFlow(w.lab, w.pod('x/b'), w.pod('x/a'), 80, file);
          for (let i = 0; (await echoesIn(file)) < 5 || (await flowEntries(w)).length === 0; i++) {
            if (i > 100) throw new Error(`the flow x/b -> x/a:80 never got going, or n1 does not track it (see ${file}.log)`);
            await sleep(100);
          }
          sport = /sport=(\d+) /.exec((await flowEntries(w))[0]!)?.[1] ?? '';
          await w.applyPolicy(policy('x', 'a-ingress', { podSelector: pod('a'), policyTypes: ['Ingress'] }));
        },
        expect: (r) => r.deny('*', 'x/a'),
        check: async (w) => {
          const problems: string[] = [];
          try {
            const left = await flowEntries(w);
            if (left.length > 0) problems.push(`conntrack on ${w.pod('x/a').node.name} still has the flow: ${left.join(' | ')}`);
            // The flow is cut when a second goes by without an echo (it sends one every 50 ms).
            let last = await echoesIn(file);
            let stalled = false;
            for (let i = 0; i < 10 && !stalled; i++) {
              await sleep(1000);
              const now = await echoesIn(file);
              stalled = now === last;
              last = now;
            }
            if (!stalled) problems.push(`the flow still gets echoes 10 s after the deny (${last} so far)`);
          } finally {
            stopGroup(flowPid);
          }
          return problems;
        },
      },
    ],
  };
}

/** One step's outcome on one backend. */
export interface StepOutcome {
  name: string;
  /** Empty when the matrix (and the step's check) came out as expected. */
  problems: string[];
  /** The grids of the ports with a mismatch. */
  grids: string;
  reprobed: number;
  ms: number;
  /** Of `ms`: the change and the wait for every agent; the probe rounds. */
  settleMs?: number;
  probeMs?: number;
}

/** Runs a case's steps on the world (change, wait for every agent, probe, check), then resets the world (not waited for). */
export async function runCase(w: NetpolWorld, c: NetpolCase): Promise<StepOutcome[]> {
  const out: StepOutcome[] = [];
  try {
    for (const step of c.steps) {
      const started = performance.now();
      const name = step.label ? `${c.name}: ${step.label}` : c.name;
      try {
        await step.change(w);
        await w.settle();
        const settled = performance.now();
        const expected = new Reachability(w.podIds(), [...MATRIX_PORTS, ...(c.ports ?? [])]);
        step.expect(expected, w);
        const { observed, reprobed } = await w.probe(expected);
        const probed = performance.now();
        const problems = [...mismatches(expected, observed), ...((await step.check?.(w)) ?? [])];
        const ms = (to: number, from: number): number => Math.round(to - from);
        out.push({ name, problems, grids: renderGrids(expected, observed), reprobed, ms: ms(performance.now(), started), settleMs: ms(settled, started), probeMs: ms(probed, settled) });
      } catch (err) {
        out.push({ name, problems: [`error: ${(err as Error).message}`], grids: '', reprobed: 0, ms: Math.round(performance.now() - started) });
        break;
      }
    }
  } finally {
    // Not waited for here: the next change's wait covers it (agents apply resourceVersions in order), and
    // the agents may take both in one apply.
    await w.reset();
  }
  return out;
}
