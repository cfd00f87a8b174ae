// NetworkPolicy on the agent's side: which tracked connections a change
// denies (FlowJudge), and the part that cuts them after the table is written.
import { pino } from 'pino';
import t from 'tap';
import { NetworkPolicyEnforcer, type PolicyWorldSource } from '../../src/agent/network-policy.js';
import type { TrackedFlow } from '../../src/dataplane/conntrack.js';
import { FlowJudge } from '../../src/policy/evaluate.js';
import type { PodInfo, PolicyWorld } from '../../src/policy/types.js';

const pod = (namespace: string, name: string, nodeName: string, ip: string, ports: PodInfo['ports'] = []): PodInfo => ({
  namespace, name, nodeName, ips: [ip], labels: { pod: name }, ports,
});
const A = pod('x', 'a', 'n1', '10.244.1.2', [{ name: 'http', containerPort: 80, protocol: 'TCP' }]);
const B = pod('y', 'b', 'n2', '10.244.2.2', [{ name: 'dns', containerPort: 53, protocol: 'UDP' }]);
const C = pod('z', 'c', 'n2', '10.244.2.3');
const NAMESPACES = ['x', 'y', 'z'].map((name) => ({ name, labels: { ns: name } }));

/** x/a: ingress only from namespace y on its named port http; egress only to y's named port dns. */
const FROM_Y_HTTP = {
  namespace: 'x', name: 'a-from-y',
  spec: {
    podSelector: { matchLabels: { pod: 'a' } },
    policyTypes: ['Ingress', 'Egress'],
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }], ports: [{ port: 'http' }] }],
    egress: [{ to: [{ namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'In', values: ['y'] }] } }], ports: [{ protocol: 'UDP', port: 'dns' }] }],
  },
};

const world = (policies: PolicyWorld['policies'], rv: string): PolicyWorld => ({ pods: [A, B, C], namespaces: NAMESPACES, policies, resourceVersion: rv });
const flow = (proto: string, src: PodInfo, dst: PodInfo, dport?: number): TrackedFlow => ({
  proto, src: src.ips[0]!, dst: dst.ips[0]!, ...(dport !== undefined ? { sport: 40000, dport } : {}),
});

t.test('FlowJudge: named ports on the right pod, namespaces by label, other nodes not judged', async (t) => {
  const judge = new FlowJudge(world([FROM_Y_HTTP], '1'), 'n1');
  const cases: [string, TrackedFlow][] = [
    ['y/b -> x/a tcp 80 (http)', flow('tcp', B, A, 80)],
    ['y/b -> x/a udp 80', flow('udp', B, A, 80)],
    ['z/c -> x/a tcp 80', flow('tcp', C, A, 80)],
    ['y/b -> x/a icmp', flow('icmp', B, A)],
    ['x/a -> y/b udp 53 (dns)', flow('udp', A, B, 53)],
    ['x/a -> y/b udp 54', flow('udp', A, B, 54)],
    ['x/a -> z/c udp 53', flow('udp', A, C, 53)],
    ['y/b -> z/c tcp 1 (neither pod on n1)', flow('tcp', B, C, 1)],
  ];
  t.same(
    cases.map(([name, f]) => `${name}: ${judge.allows(f) ? 'allowed' : 'denied'}`),
    [
      'y/b -> x/a tcp 80 (http): allowed',
      'y/b -> x/a udp 80: denied',
      'z/c -> x/a tcp 80: denied',
      'y/b -> x/a icmp: denied',
      'x/a -> y/b udp 53 (dns): allowed',
      'x/a -> y/b udp 54: denied',
      'x/a -> z/c udp 53: denied',
      'y/b -> z/c tcp 1 (neither pod on n1): allowed',
    ],
  );
});

/** A source the test feeds by hand. */
class HandSource implements PolicyWorldSource {
  private emit?: (w: PolicyWorld) => void;
  failing?: string;
  run(onChange: (w: PolicyWorld) => void, signal: AbortSignal): Promise<void> {
    this.emit = onChange;
    return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  }
  push(w: PolicyWorld): void {
    this.emit!(w);
  }
  health(): string | undefined {
    return this.failing;
  }
}

t.test('the policy part: only changed pods, only denied flows, nothing before the table is written', async (t) => {
  const source = new HandSource();
  const flows = [flow('tcp', B, A, 80), flow('tcp', C, A, 80), flow('udp', B, C, 53)];
  const deleted: TrackedFlow[][] = [];
  const enforcer = new NetworkPolicyEnforcer({
    source, nodeName: 'n1', logger: pino({ level: 'silent' }),
    conntrack: { list: async () => flows, delete: async (f) => (deleted.push([...f]), f.length) },
    bridgeNetfilter: async () => [],
  });
  const stop = new AbortController();
  t.teardown(() => stop.abort());
  let passes = 0;
  void enforcer.run(stop.signal, () => passes++);
  t.match(enforcer.readiness(), { part: 'policy', reason: /not listed yet/ }, 'not ready before the first world');

  source.push(world([], '7'));
  const part = (failed?: string) => enforcer.part([4], () => failed);
  t.same(enforcer.nft([4]), { sets: [], maps: [], chains: [] }, 'no policy: no chains');
  await part().apply();
  t.same(deleted, [], 'no isolated pod: nothing cut');

  source.push(world([FROM_Y_HTTP], '9'));
  await t.rejects(part('nft -f: syntax error').apply(), { message: /wait for the nftables table \(nft -f: syntax error\)/ }, 'a failed table write claims nothing');
  t.match(enforcer.metrics().find((m) => m.name === 'weft_policy_resource_version')?.samples, [{ value: 7 }], 'the kernel still holds version 7');
  await part().apply();
  t.same(deleted, [[flow('tcp', C, A, 80)]], 'x/a became isolated: z/c -> x/a is cut, y/b -> x/a (allowed) and y/b -> z/c (not this node) stay');
  t.match(enforcer.metrics().find((m) => m.name === 'weft_policy_resource_version')?.samples, [{ value: 9 }], 'version 9 reached the kernel');

  source.push(world([FROM_Y_HTTP], '10'));
  await part().apply();
  t.equal(deleted.length, 1, 'a change that leaves x/a\'s rules as they were lists no connection');
  t.equal(passes, 3, 'each world asked for a programming pass');
  source.failing = 'NetworkPolicy watch: list pods: HTTP 403';
  t.match(enforcer.readiness(), { part: 'policy', reason: /HTTP 403/ }, 'a failing watch makes the node not ready');
});
