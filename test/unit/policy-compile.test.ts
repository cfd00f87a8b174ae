// NetworkPolicy compiled to nftables: who is isolated, which peers each rule's
// set holds, which ports each rule allows, the rendered table text, the pods
// whose conntrack entries must go, and problems for invalid input.
import t from 'tap';
import { compilePolicies, podsToFlush, type CompiledPolicy } from '../../src/policy/compile.js';
import { nftRuleset } from '../../src/dataplane/nft.js';
import type { NetworkPolicyObject, PodInfo, PodPort, PolicyWorld } from '../../src/policy/types.js';
import type { Family } from '../../src/core/cidr.js';

const pod = (namespace: string, name: string, ips: string[], nodeName: string, labels: Record<string, string>, ports: PodPort[] = []): PodInfo =>
  ({ namespace, name, ips, nodeName, labels, ports });

// Namespaces x, y, z; pods a, b, c; this node is n1.
const PODS: PodInfo[] = [
  pod('x', 'a', ['198.51.100.10'], 'n1', { pod: 'a' }, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]),
  pod('x', 'b', ['198.51.100.12'], 'n1', { pod: 'b' }),
  pod('y', 'a', ['198.51.100.20'], 'n2', { pod: 'a' }, [{ name: 'http', containerPort: 9090, protocol: 'TCP' }, { name: 'dns', containerPort: 53, protocol: 'UDP' }]),
  pod('y', 'b', ['198.51.100.22'], 'n1', { pod: 'b' }),
  pod('z', 'c', ['198.51.100.30'], 'n2', { pod: 'c' }, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]),
];
const NAMESPACES = ['x', 'y', 'z'].map((name) => ({ name, labels: { ns: name, 'kubernetes.io/metadata.name': name } }));

const policy = (namespace: string, name: string, spec: unknown): NetworkPolicyObject => ({ namespace, name, spec });
const world = (policies: NetworkPolicyObject[], pods: PodInfo[] = PODS): PolicyWorld =>
  ({ pods, namespaces: NAMESPACES, policies, resourceVersion: '1' });
const compile = (policies: NetworkPolicyObject[], pods: PodInfo[] = PODS, families: Family[] = [4]): CompiledPolicy =>
  compilePolicies(world(policies, pods), { nodeName: 'n1', families });

/**
 * The rules deciding `ip`'s traffic in one direction, each set reference
 * replaced by its elements; undefined when the pod is not isolated there.
 */
function rulesOf(c: CompiledPolicy, ip: string, dir: 'ingress' | 'egress'): string[] | undefined {
  const family = ip.includes(':') ? 6 : 4;
  const verdict = c.nft.maps.find((m) => m.name === `${dir}${family}`)?.elements.find((e) => e.key === ip)?.verdict;
  if (!verdict) return undefined;
  const chain = c.nft.chains.find((ch) => `jump ${ch.name}` === verdict);
  return chain?.rules.map((r) => r.replace(/@(s[0-9a-f]+)/g, (_, name: string) => `{ ${c.nft.sets.find((s) => s.name === name)!.elements.join(', ')} }`));
}
const isolation = (c: CompiledPolicy, ip: string): { ingress: boolean; egress: boolean } =>
  ({ ingress: rulesOf(c, ip, 'ingress') !== undefined, egress: rulesOf(c, ip, 'egress') !== undefined });
const ingressOnly = (namespace: string, podSelector: unknown, ingress: unknown[]): NetworkPolicyObject =>
  policy(namespace, 'p', { podSelector, ingress, policyTypes: ['Ingress'] });
const A = { matchLabels: { pod: 'a' } };

t.test('no policy: nothing isolated, nothing in the table', async (t) => {
  const c = compile([]);
  t.same({ nft: c.nft, podRules: [...c.podRules], isolated: c.stats.isolatedPods }, { nft: { sets: [], maps: [], chains: [] }, podRules: [], isolated: 0 });
});

t.test('podSelector peer: pods of the policy namespace with those labels', async (t) => {
  const c = compile([ingressOnly('x', A, [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }])]);
  t.same(rulesOf(c, '198.51.100.10', 'ingress'), ['ip saddr { 198.51.100.12 } accept', 'drop']);
});

t.test('namespaceSelector peer: every pod of the matching namespaces, on any node', async (t) => {
  const c = compile([ingressOnly('x', A, [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }] }])]);
  t.same(rulesOf(c, '198.51.100.10', 'ingress'), ['ip saddr { 198.51.100.20, 198.51.100.22 } accept', 'drop']);
});

t.test('podSelector and namespaceSelector in one peer: both must hold (AND)', async (t) => {
  const c = compile([ingressOnly('x', A, [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } }, podSelector: A }] }])]);
  t.same(rulesOf(c, '198.51.100.10', 'ingress'), ['ip saddr { 198.51.100.20 } accept', 'drop']);
});

t.test('the same two selectors as separate peers: either suffices (OR)', async (t) => {
  const c = compile([ingressOnly('x', A, [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }, { podSelector: A }] }])]);
  t.same(rulesOf(c, '198.51.100.10', 'ingress'), ['ip saddr { 198.51.100.10, 198.51.100.20, 198.51.100.22 } accept', 'drop']);
});

t.test('namespaceSelector {} with a podSelector: those pods in every namespace', async (t) => {
  const c = compile([ingressOnly('x', A, [{ from: [{ namespaceSelector: {}, podSelector: { matchExpressions: [{ key: 'pod', operator: 'NotIn', values: ['a'] }] } }] }])]);
  t.same(rulesOf(c, '198.51.100.10', 'ingress'), ['ip saddr { 198.51.100.12, 198.51.100.22, 198.51.100.30 } accept', 'drop']);
});

t.test('ipBlock minus except: disjoint intervals merged with peer pods, prefixes where they are prefixes', async (t) => {
  const c = compile([ingressOnly('x', A, [{
    from: [
      { ipBlock: { cidr: '203.0.113.0/24', except: ['203.0.113.64/26', '203.0.113.200/32'] } },
      { ipBlock: { cidr: '192.0.2.0/24', except: ['192.0.2.0/32'] } },
      { podSelector: { matchLabels: { pod: 'b' } } },
      { ipBlock: { cidr: '198.51.100.13/32' } },
    ],
  }])]);
  t.same(rulesOf(c, '198.51.100.10', 'ingress'), [
    'ip saddr { 192.0.2.1-192.0.2.255, 198.51.100.12/31, 203.0.113.0/26, 203.0.113.128-203.0.113.199, 203.0.113.201-203.0.113.255 } accept',
    'drop',
  ]);
});

t.test('overlapping and repeated excepts cut once; an except equal to the CIDR leaves nothing', async (t) => {
  const c = compile([ingressOnly('x', A, [{
    from: [
      { ipBlock: { cidr: '203.0.113.0/24', except: ['203.0.113.64/26', '203.0.113.0/25', '203.0.113.64/26', '203.0.113.255/32'] } },
      { ipBlock: { cidr: '192.0.2.0/24', except: ['192.0.2.0/24'] } },
    ],
  }])]);
  t.same(rulesOf(c, '198.51.100.10', 'ingress'), ['ip saddr { 203.0.113.128-203.0.113.254 } accept', 'drop']);
});

t.test('a rule with neither peers nor ports allows everything; empty from with ports allows those ports from anyone', async (t) => {
  const c = compile([ingressOnly('x', A, [{}, { from: [], ports: [{ port: 80 }] }])]);
  t.same(rulesOf(c, '198.51.100.10', 'ingress'), ['accept', 'meta l4proto tcp th dport 80 accept', 'drop']);
});

t.test('named port on ingress resolves on the protected pod; a pod without it allows nothing', async (t) => {
  const c = compile([ingressOnly('x', {}, [{ ports: [{ port: 'http' }] }])]);
  t.same({ a: rulesOf(c, '198.51.100.10', 'ingress'), b: rulesOf(c, '198.51.100.12', 'ingress') },
    { a: ['meta l4proto tcp th dport 8080 accept', 'drop'], b: ['drop'] });
});

t.test('named port with a protocol resolves only on a port of that protocol', async (t) => {
  const c = compile([ingressOnly('x', A, [{ ports: [{ port: 'http', protocol: 'UDP' }] }])]);
  t.same(rulesOf(c, '198.51.100.10', 'ingress'), ['drop']);
});

t.test('named port on egress: destination pods grouped by what the name resolves to', async (t) => {
  const c = compile([policy('x', 'p', {
    podSelector: { matchLabels: { pod: 'b' } }, policyTypes: ['Egress'],
    egress: [{ to: [{ namespaceSelector: {} }], ports: [{ port: 'http' }, { port: 'dns', protocol: 'UDP' }] }],
  })]);
  t.same(rulesOf(c, '198.51.100.12', 'egress'), [
    'ip daddr { 198.51.100.10, 198.51.100.30 } meta l4proto tcp th dport 8080 accept',
    'ip daddr { 198.51.100.20 } meta l4proto tcp th dport 9090 accept',
    'ip daddr { 198.51.100.20 } meta l4proto udp th dport 53 accept',
    'drop',
  ]);
});

t.test('egress mixing numeric and named ports: numbers for every peer, names for the pods they resolve on', async (t) => {
  const c = compile([policy('x', 'p', {
    podSelector: { matchLabels: { pod: 'b' } }, policyTypes: ['Egress'],
    egress: [{ to: [{ podSelector: {} }, { ipBlock: { cidr: '203.0.113.0/24' } }], ports: [{ port: 443 }, { port: 'http' }] }],
  })]);
  t.same(rulesOf(c, '198.51.100.12', 'egress'), [
    'ip daddr { 198.51.100.10, 198.51.100.12, 203.0.113.0/24 } meta l4proto tcp th dport 443 accept',
    'ip daddr { 198.51.100.10 } meta l4proto tcp th dport 8080 accept',
    'drop',
  ]);
});

t.test('endPort ranges and single ports merge into one port set per protocol', async (t) => {
  const c = compile([ingressOnly('x', A, [{ ports: [{ port: 8000, endPort: 9000 }, { port: 81 }, { port: 80 }, { port: 8500, endPort: 9500 }, { port: 53, protocol: 'UDP' }] }])]);
  t.same(rulesOf(c, '198.51.100.10', 'ingress'), [
    'meta l4proto tcp th dport { 80-81, 8000-9500 } accept',
    'meta l4proto udp th dport 53 accept',
    'drop',
  ]);
});

t.test('SCTP ports, and a protocol without a port allows all of that protocol', async (t) => {
  const c = compile([ingressOnly('x', A, [{ ports: [{ protocol: 'SCTP', port: 9 }, { protocol: 'UDP' }] }])]);
  t.same(rulesOf(c, '198.51.100.10', 'ingress'), ['meta l4proto udp accept', 'meta l4proto sctp th dport 9 accept', 'drop']);
});

t.test('policyTypes defaults: Ingress always, Egress only with egress rules', async (t) => {
  const ingressRulesOnly = compile([policy('x', 'p', { podSelector: A, ingress: [{}] })]);
  const withEgress = compile([policy('x', 'p', { podSelector: A, egress: [{ ports: [{ port: 53, protocol: 'UDP' }] }] })]);
  const nothing = compile([policy('x', 'p', { podSelector: A })]);
  t.same({
    ingressRulesOnly: isolation(ingressRulesOnly, '198.51.100.10'),
    withEgress: isolation(withEgress, '198.51.100.10'),
    nothing: isolation(nothing, '198.51.100.10'),
  }, {
    ingressRulesOnly: { ingress: true, egress: false },
    withEgress: { ingress: true, egress: true },
    nothing: { ingress: true, egress: false },
  });
});

t.test('rules of a direction not in policyTypes are ignored', async (t) => {
  const c = compile([policy('x', 'p', { podSelector: A, policyTypes: ['Egress'], ingress: [{}], egress: [] })]);
  t.same(isolation(c, '198.51.100.10'), { ingress: false, egress: true });
});

t.test('default deny both directions: every pod of the namespace, one shared chain per direction', async (t) => {
  const c = compile([policy('x', 'deny', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })]);
  t.same({
    a: [rulesOf(c, '198.51.100.10', 'ingress'), rulesOf(c, '198.51.100.10', 'egress')],
    b: [rulesOf(c, '198.51.100.12', 'ingress'), rulesOf(c, '198.51.100.12', 'egress')],
    podChains: c.nft.chains.filter((ch) => !ch.head).length,
  }, { a: [['drop'], ['drop']], b: [['drop'], ['drop']], podChains: 2 });
});

t.test('two policies selecting one pod: the union of their rules', async (t) => {
  const c = compile([
    policy('x', 'one', { podSelector: A, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] }),
    policy('x', 'two', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'z' } } }], ports: [{ port: 80 }] }] }),
  ]);
  t.same(rulesOf(c, '198.51.100.10', 'ingress'), [
    'ip saddr { 198.51.100.12 } accept',
    'ip saddr { 198.51.100.30 } meta l4proto tcp th dport 80 accept',
    'drop',
  ]);
});

t.test('pods on other nodes are peers but not enforced here', async (t) => {
  const c = compile([policy('y', 'deny', { podSelector: {} })]);
  t.same({ keys: c.nft.maps.flatMap((m) => m.elements.map((e) => e.key)), podRules: [...c.podRules.keys()] },
    { keys: ['198.51.100.22'], podRules: ['198.51.100.22'] });
});

t.test('dual stack: IPv6 peer sets, rules and map entries beside the IPv4 ones', async (t) => {
  const pods = [
    pod('x', 'a', ['198.51.100.10', '2001:db8:1::10'], 'n1', { pod: 'a' }),
    pod('y', 'b', ['198.51.100.22', '2001:db8:1::22'], 'n2', { pod: 'b' }),
  ];
  const p = ingressOnly('x', A, [{ from: [{ namespaceSelector: {} , podSelector: { matchLabels: { pod: 'b' } } }, { ipBlock: { cidr: '2001:db8:ff::/48', except: ['2001:db8:ff::/64'] } }] }]);
  const both = compile([p], pods, [4, 6]);
  const v4 = compile([p], pods, [4]);
  t.same({
    v4: rulesOf(both, '198.51.100.10', 'ingress'),
    v6: rulesOf(both, '2001:db8:1::10', 'ingress'),
    maps: both.nft.maps.map((m) => m.name),
    onlyV4Node: v4.nft.sets.map((s) => s.type),
  }, {
    v4: ['ip saddr { 198.51.100.22 } accept', 'ip6 saddr { 2001:db8:1::22, 2001:db8:ff:1::-2001:db8:ff:ffff:ffff:ffff:ffff:ffff } accept', 'drop'],
    v6: ['ip saddr { 198.51.100.22 } accept', 'ip6 saddr { 2001:db8:1::22, 2001:db8:ff:1::-2001:db8:ff:ffff:ffff:ffff:ffff:ffff } accept', 'drop'],
    maps: ['ingress4', 'ingress6'],
    onlyV4Node: ['ipv4_addr'],
  });
});

t.test('a policy selecting 1000 peer pods is one set, not 1000 rules', async (t) => {
  const many = Array.from({ length: 1000 }, (_, i) => pod('y', `p${i}`, [`10.${i >> 8}.${i & 255}.${1}`], 'n2', { role: 'client' }));
  const c = compile([ingressOnly('x', A, [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { role: 'client' } } }] }])], [...PODS, ...many]);
  t.same({ sets: c.stats.sets, setElements: c.stats.setElements, podChainRules: rulesOf(c, '198.51.100.10', 'ingress')!.length },
    { sets: 1, setElements: 1000, podChainRules: 2 });
});

t.test('rendered table: default deny ingress for one pod, exactly', async (t) => {
  const c = compile([ingressOnly('x', A, [])]);
  const chain = c.nft.chains[0]!.name;
  t.equal(nftRuleset({ allowedPeers: [], policy: c.nft }), [
    'table inet weft',
    'delete table inet weft',
    'table inet weft {',
    `\tchain ${chain} {`,
    '\t\tdrop',
    '\t}',
    '\tmap ingress4 {',
    '\t\ttype ipv4_addr : verdict',
    `\t\telements = { 198.51.100.10 : jump ${chain} }`,
    '\t}',
    '\tchain policy_ingress {',
    '\t\ttype filter hook forward priority filter - 4; policy accept;',
    '\t\tct state established,related accept',
    '\t\tip daddr vmap @ingress4',
    '\t}',
    '}',
    '',
  ].join('\n'));
});

t.test('rendered table: ingress from a namespace and egress to DNS, dual stack, exactly', async (t) => {
  const pods = [pod('x', 'a', ['198.51.100.10', '2001:db8:1::10'], 'n1', { pod: 'a' }), pod('y', 'b', ['198.51.100.22', '2001:db8:1::22'], 'n2', {})];
  const c = compile([policy('x', 'p', {
    podSelector: A, policyTypes: ['Ingress', 'Egress'],
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }], ports: [{ port: 80 }] }],
    egress: [{ ports: [{ port: 53, protocol: 'UDP' }, { port: 53 }] }],
  })], pods, [4, 6]);
  const [egress, ingress] = ['e', 'i'].map((d) => c.nft.chains.find((ch) => ch.name.startsWith(d) && !ch.head)!.name);
  const [set4, set6] = [4, 6].map((f) => c.nft.sets.find((s) => s.type === `ipv${f}_addr`)!.name);
  t.equal(nftRuleset({ allowedPeers: [], policy: c.nft }), [
    'table inet weft',
    'delete table inet weft',
    'table inet weft {',
    // Sets in name order, which is a hash: whichever comes first.
    ...c.nft.sets.flatMap((s) => (s.name === set4
      ? [`\tset ${set4} {`, '\t\ttype ipv4_addr', '\t\tflags interval', '\t\telements = { 198.51.100.22 }', '\t}']
      : [`\tset ${set6} {`, '\t\ttype ipv6_addr', '\t\tflags interval', '\t\telements = { 2001:db8:1::22 }', '\t}'])),
    `\tchain ${egress} {`, '\t\tmeta l4proto tcp th dport 53 accept', '\t\tmeta l4proto udp th dport 53 accept', '\t\tdrop', '\t}',
    `\tchain ${ingress} {`,
    `\t\tip saddr @${set4} meta l4proto tcp th dport 80 accept`,
    `\t\tip6 saddr @${set6} meta l4proto tcp th dport 80 accept`,
    '\t\tdrop',
    '\t}',
    '\tmap egress4 {', '\t\ttype ipv4_addr : verdict', `\t\telements = { 198.51.100.10 : jump ${egress} }`, '\t}',
    '\tmap egress6 {', '\t\ttype ipv6_addr : verdict', `\t\telements = { 2001:db8:1::10 : jump ${egress} }`, '\t}',
    '\tmap ingress4 {', '\t\ttype ipv4_addr : verdict', `\t\telements = { 198.51.100.10 : jump ${ingress} }`, '\t}',
    '\tmap ingress6 {', '\t\ttype ipv6_addr : verdict', `\t\telements = { 2001:db8:1::10 : jump ${ingress} }`, '\t}',
    '\tchain policy_egress {',
    '\t\ttype filter hook forward priority filter - 5; policy accept;',
    '\t\tct state established,related accept',
    '\t\tip saddr vmap @egress4',
    '\t\tip6 saddr vmap @egress6',
    '\t}',
    '\tchain policy_ingress {',
    '\t\ttype filter hook forward priority filter - 4; policy accept;',
    '\t\tct state established,related accept',
    '\t\tip daddr vmap @ingress4',
    '\t\tip6 daddr vmap @ingress6',
    '\t}',
    '}',
    '',
  ].join('\n'));
});

t.test('the text does not depend on the order the watches delivered things in', async (t) => {
  const policies = [
    policy('x', 'one', { podSelector: A, ingress: [{ from: [{ podSelector: {} }] }] }),
    policy('x', 'two', { podSelector: {}, egress: [{ to: [{ namespaceSelector: {} }] }] }),
  ];
  const text = (p: NetworkPolicyObject[], pods: PodInfo[]) => nftRuleset({ allowedPeers: [], policy: compile(p, pods).nft });
  t.equal(text([...policies].reverse(), [...PODS].reverse()), text(policies, PODS));
});

t.test('names in the table are short hashes whatever the API objects are called', async (t) => {
  const hostile = 'x; delete table inet filter #'.padEnd(200, '}');
  const c = compilePolicies({
    pods: [pod(hostile, hostile, ['198.51.100.10'], 'n1', {})],
    namespaces: [{ name: hostile, labels: {} }],
    policies: [policy(hostile, hostile, { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] })],
    resourceVersion: '1',
  }, { nodeName: 'n1', families: [4] });
  const names = [...c.nft.sets, ...c.nft.maps, ...c.nft.chains].map((x) => x.name);
  t.same({ problems: c.problems, unsafe: names.filter((n) => !/^[a-z][a-z0-9_]{0,30}$/.test(n)), hostileInText: nftRuleset({ allowedPeers: [], policy: c.nft }).includes('delete table inet filter') },
    { problems: [], unsafe: [], hostileInText: false });
});

t.test('podsToFlush: newly isolated pods and pods whose rules changed, nothing else', async (t) => {
  const deny = policy('x', 'deny', { podSelector: A });
  const fromB = policy('x', 'b', { podSelector: A, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] });
  const first = compile([deny]);
  const relabelled = PODS.map((p) => (p.name === 'b' && p.namespace === 'x' ? { ...p, labels: { pod: 'c' } } : p));
  t.same({
    atStart: podsToFlush(undefined, first),
    unchanged: podsToFlush(first, compile([deny])),
    ruleAdded: podsToFlush(first, compile([deny, fromB])),
    peerRelabelled: podsToFlush(compile([deny, fromB]), compile([deny, fromB], relabelled)),
    unrelatedPodChanged: podsToFlush(compile([deny, fromB]), compile([deny, fromB], PODS.filter((p) => p.name !== 'c'))),
    newlyIsolated: podsToFlush(first, compile([deny, policy('y', 'deny', { podSelector: {} })])),
    noLongerIsolated: podsToFlush(first, compile([])),
  }, {
    atStart: ['198.51.100.10'],
    unchanged: [],
    ruleAdded: ['198.51.100.10'],
    peerRelabelled: ['198.51.100.10'],
    unrelatedPodChanged: [],
    newlyIsolated: ['198.51.100.22'],
    noLongerIsolated: [],
  });
});

t.test('invalid input fails closed: the bad rule or peer allows nothing, a bad podSelector ignores the policy', async (t) => {
  const c = compile([
    policy('x', 'badop', { podSelector: A, ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'pod', operator: 'Is', values: ['b'] }] } }] }] }),
    policy('x', 'badsel', { podSelector: { matchLabels: { pod: ['b'] } }, policyTypes: ['Ingress', 'Egress'] }),
    policy('y', 'mixed', { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '203.0.113.0/33' } }, { podSelector: A }] }] }),
  ]);
  t.same({
    xa: rulesOf(c, '198.51.100.10', 'ingress'),
    xb: isolation(c, '198.51.100.12'),
    yb: rulesOf(c, '198.51.100.22', 'ingress'),
    problems: c.problems,
  }, {
    xa: ['drop'],
    xb: { ingress: false, egress: false },
    yb: ['ip saddr { 198.51.100.20 } accept', 'drop'],
    problems: [
      { policy: 'x/badop', reason: 'spec.ingress[0].from[0].podSelector.matchExpressions[0].operator: "Is" is not In, NotIn, Exists or DoesNotExist; use one of those (this peer allows nothing)' },
      { policy: 'x/badsel', reason: 'spec.podSelector.matchLabels: label value ["b"] is not a string; fix the label (policy ignored)' },
      { policy: 'y/mixed', reason: 'spec.ingress[0].from[0].ipBlock.cidr: "203.0.113.0/33" has a prefix longer than /32; give a CIDR such as 192.0.2.0/24 (this peer allows nothing)' },
    ],
  });
});

t.test('each kind of invalid rule is reported on its field and allows nothing', async (t) => {
  const cases: Record<string, unknown> = {
    protocol: { ports: [{ protocol: 'ICMP', port: 1 }] },
    protoKey: { ports: [{ protocol: 'constructor' }] },
    portZero: { ports: [{ port: 0 }] },
    portText: { ports: [{ port: '80' }] },
    endPortNamed: { ports: [{ port: 'http', endPort: 90 }] },
    endPortLow: { ports: [{ port: 90, endPort: 80 }] },
    portsNotList: { ports: 'all' },
    fromNotList: { from: { podSelector: {} } },
    emptyPeer: { from: [{}] },
    blockAndSelector: { from: [{ ipBlock: { cidr: '203.0.113.0/24' }, podSelector: {} }] },
    exceptOutside: { from: [{ ipBlock: { cidr: '203.0.113.0/24', except: ['192.0.2.0/24'] } }] },
    ruleNotObject: 'allow',
  };
  const outcome = Object.fromEntries(Object.entries(cases).map(([name, rule]) => {
    const c = compile([ingressOnly('x', A, [rule])]);
    return [name, { rules: rulesOf(c, '198.51.100.10', 'ingress'), reason: c.problems.map((p) => p.reason).join(' | ') }];
  }));
  const denied = ' (this rule allows nothing)';
  const peerDenied = ' (this peer allows nothing)';
  t.same(outcome, {
    protocol: { rules: ['drop'], reason: `spec.ingress[0].ports[0].protocol: "ICMP" is not TCP, UDP or SCTP; use one of those${denied}` },
    protoKey: { rules: ['drop'], reason: `spec.ingress[0].ports[0].protocol: "constructor" is not TCP, UDP or SCTP; use one of those${denied}` },
    portZero: { rules: ['drop'], reason: `spec.ingress[0].ports[0].port: 0 is not a port number 1-65535; fix the number${denied}` },
    portText: { rules: ['drop'], reason: `spec.ingress[0].ports[0].port: "80" is neither a number nor a container port name (1-15 lowercase letters, digits, '-'); fix it${denied}` },
    endPortNamed: { rules: ['drop'], reason: `spec.ingress[0].ports[0].endPort: needs a numeric port to start the range; give port a number or remove endPort${denied}` },
    endPortLow: { rules: ['drop'], reason: `spec.ingress[0].ports[0].endPort: 80 is not a port from 90 to 65535; fix the range${denied}` },
    portsNotList: { rules: ['drop'], reason: `spec.ingress[0].ports: "all" is not a list of ports${denied}` },
    fromNotList: { rules: ['drop'], reason: `spec.ingress[0].from: {"podSelector":{}} is not a list of peers${denied}` },
    emptyPeer: { rules: ['drop'], reason: `spec.ingress[0].from[0]: names no podSelector, namespaceSelector or ipBlock; give one${peerDenied}` },
    blockAndSelector: { rules: ['drop'], reason: `spec.ingress[0].from[0]: ipBlock is combined with a selector; make them separate peers${peerDenied}` },
    exceptOutside: { rules: ['drop'], reason: `spec.ingress[0].ipBlock.except[0]: 192.0.2.0/24 is not inside 203.0.113.0/24; give a CIDR inside it${peerDenied}`.replace('ingress[0].ipBlock', 'ingress[0].from[0].ipBlock') },
    ruleNotObject: { rules: ['drop'], reason: `spec.ingress[0]: "allow" is not an object with from and ports${denied}` },
  });
});

t.test('unreadable policyTypes or spec: both directions isolated, or the policy ignored', async (t) => {
  const types = compile([policy('x', 'p', { podSelector: A, policyTypes: ['Inbound'] })]);
  const spec = compile([policy('x', 'q', 'deny everything')]);
  t.same({
    types: [isolation(types, '198.51.100.10'), types.problems],
    spec: [spec.stats.policies, spec.problems],
  }, {
    types: [{ ingress: true, egress: true }, [{ policy: 'x/p', reason: 'spec.policyTypes: "Inbound" is not Ingress or Egress; use those (both directions isolated)' }]],
    spec: [0, [{ policy: 'x/q', reason: 'spec: "deny everything" is not an object; give the policy a spec (policy ignored)' }]],
  });
});

t.test('stats count what the table holds', async (t) => {
  const c = compile([
    policy('x', 'deny', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }),
    policy('x', 'web', { podSelector: A, ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ port: 80 }, { port: 53, protocol: 'UDP' }] }] }),
  ]);
  // Chains: a's ingress (tcp, udp, drop), b's ingress (drop), the shared egress deny (drop), two base chains (ct state, vmap).
  t.same(c.stats, { policies: 2, isolatedPods: 2, chains: 5, rules: 3 + 1 + 1 + 2 + 2, sets: 1, setElements: 5, maps: 2, mapElements: 4 });
});
