import t from 'tap';
import { nftRuleset, shapeOfListing } from '../../src/dataplane/nft.js';

t.test('VXLAN port locked to peers, both families, deterministic', async (t) => {
  const text = nftRuleset({ vxlanPort: 8472, allowedPeers: ['192.0.2.3', 'fd00::0:2', '192.0.2.2', '192.0.2.3'] });
  t.equal(text, [
    'table inet weft',
    'delete table inet weft',
    'table inet weft {',
    '\tset vxlan_peers4 {',
    '\t\ttype ipv4_addr',
    '\t\telements = { 192.0.2.2, 192.0.2.3 }',
    '\t}',
    '\tset vxlan_peers6 {',
    '\t\ttype ipv6_addr',
    '\t\telements = { fd00::2 }',
    '\t}',
    '\tchain input {',
    '\t\ttype filter hook input priority filter; policy accept;',
    '\t\tudp dport 8472 ip saddr @vxlan_peers4 accept',
    '\t\tudp dport 8472 ip6 saddr @vxlan_peers6 accept',
    '\t\tudp dport 8472 drop',
    '\t}',
    '}',
    '',
  ].join('\n'));
  t.equal(nftRuleset({ vxlanPort: 8472, allowedPeers: ['192.0.2.2', '192.0.2.3'] }),
    nftRuleset({ vxlanPort: 8472, allowedPeers: ['192.0.2.3', '192.0.2.2'] }), 'peer order does not matter');
});

t.test('no peers: the port is closed to everyone', async (t) => {
  const text = nftRuleset({ vxlanPort: 4789, allowedPeers: [] });
  t.notMatch(text, /elements/);
  t.match(text, /udp dport 4789 drop/);
});

t.test('masquerade: only pod traffic leaving the Network, never pod-to-pod, never kube-proxy-marked', async (t) => {
  const text = nftRuleset({ allowedPeers: [], masquerade: [{ network: '10.5.0.0/16', podSubnet: '10.5.1.0/24' }], forwardNetworks: ['10.5.0.0/16'] });
  t.notMatch(text, /chain input/, 'no VXLAN rules without a port');
  const post = text.slice(text.indexOf('chain postrouting'));
  const rules = post.split('\n').slice(2, 5).map((l) => l.trim());
  t.same(rules, [
    'meta mark & 0x4000 == 0x4000 return',
    'ip saddr 10.5.0.0/16 ip daddr 10.5.0.0/16 return',
    'ip saddr 10.5.1.0/24 ip daddr != 224.0.0.0/4 masquerade fully-random',
  ], 'the returns come before the masquerade');
  t.match(text, /type nat hook postrouting priority srcnat; policy accept;/);
  t.match(text, /chain forward \{\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tip saddr 10\.5\.0\.0\/16 accept\n\t\tip daddr 10\.5\.0\.0\/16 accept/);
  const v6 = nftRuleset({ allowedPeers: [], masquerade: [{ network: 'fd00:5::/48', podSubnet: 'fd00:5:0:1::/64' }] });
  t.match(v6, /ip6 saddr fd00:5:0:1::\/64 ip6 daddr != ff00::\/8 masquerade/);
});

t.test('dual-stack: masquerade and forwarding in both families, each family\'s returns before its masquerade', async (t) => {
  const text = nftRuleset({
    allowedPeers: [],
    masquerade: [{ network: '10.5.0.0/16', podSubnet: '10.5.1.0/24' }, { network: '2001:db8:5::/56', podSubnet: '2001:db8:5:1::/64' }],
    forwardNetworks: ['10.5.0.0/16', '2001:db8:5::/56'],
  });
  const chain = (name: string): string[] => {
    const body = text.slice(text.indexOf(`chain ${name} {`));
    return body.slice(0, body.indexOf('\t}')).split('\n').slice(2).map((l) => l.trim()).filter(Boolean);
  };
  t.same({ postrouting: chain('postrouting'), forward: chain('forward') }, {
    postrouting: [
      'meta mark & 0x4000 == 0x4000 return',
      'ip saddr 10.5.0.0/16 ip daddr 10.5.0.0/16 return',
      'ip saddr 10.5.1.0/24 ip daddr != 224.0.0.0/4 masquerade fully-random',
      'ip6 saddr 2001:db8:5::/56 ip6 daddr 2001:db8:5::/56 return',
      'ip6 saddr 2001:db8:5:1::/64 ip6 daddr != ff00::/8 masquerade fully-random',
    ],
    forward: ['ip saddr 10.5.0.0/16 accept', 'ip daddr 10.5.0.0/16 accept', 'ip6 saddr 2001:db8:5::/56 accept', 'ip6 daddr 2001:db8:5::/56 accept'],
  });
});

t.test('an empty rule set still replaces the table atomically', async (t) => {
  t.equal(nftRuleset({ allowedPeers: [] }), 'table inet weft\ndelete table inet weft\ntable inet weft {\n}\n');
});

t.test('bad input is refused by name, never written into the ruleset', async (t) => {
  t.throws(() => nftRuleset({ vxlanPort: 70000, allowedPeers: [] }), /VXLAN port 70000/);
  t.throws(() => nftRuleset({ vxlanPort: 8472, allowedPeers: ['192.0.2.2 } ; flush ruleset'] }), /allowed peer/);
  t.throws(() => nftRuleset({ allowedPeers: [], masquerade: [{ network: '10.5.0.0/16', podSubnet: '10.6.1.0/24' }] }), /not inside the network/);
  t.throws(() => nftRuleset({ allowedPeers: [], masquerade: [{ network: '10.5.0.0/16', podSubnet: 'fd00::/64' }] }), /not inside/);
  t.throws(() => nftRuleset({ allowedPeers: [], forwardNetworks: ['any'] }), /forward network/);
});

t.test('a listing is compared by shape: sets with elements, chains with rule counts', async (t) => {
  const listing = (elems: string[], inputRules: number) => ({
    nftables: [
      { metainfo: { version: '1.0.6' } },
      { table: { family: 'inet', name: 'weft', handle: 1 } },
      { set: { family: 'inet', name: 'vxlan_peers4', table: 'weft', type: 'ipv4_addr', handle: 3, ...(elems.length ? { elem: elems } : {}) } },
      { set: { family: 'inet', name: 'vxlan_peers6', table: 'weft', type: 'ipv6_addr', handle: 4 } },
      { chain: { family: 'inet', table: 'weft', name: 'input', handle: 1, type: 'filter', hook: 'input', prio: 0, policy: 'accept' } },
      ...Array.from({ length: inputRules }, (_, i) => ({ rule: { family: 'inet', table: 'weft', chain: 'input', handle: 5 + i, expr: [] } })),
    ],
  });
  t.equal(shapeOfListing(listing(['192.0.2.3', '192.0.2.2'], 3)), ['chain input 3', 'set vxlan_peers4 192.0.2.2,192.0.2.3', 'set vxlan_peers6 '].join('\n'));
  t.not(shapeOfListing(listing(['192.0.2.2'], 3)), shapeOfListing(listing(['192.0.2.2', '192.0.2.3'], 3)), 'a removed element shows');
  t.not(shapeOfListing(listing(['192.0.2.2'], 2)), shapeOfListing(listing(['192.0.2.2'], 3)), 'a removed rule shows');
  t.equal(shapeOfListing(listing([], 0)), ['chain input 0', 'set vxlan_peers4 ', 'set vxlan_peers6 '].join('\n'), 'a flushed chain shows');
  t.equal(shapeOfListing({}), '');
});

t.test('interval sets and verdict maps: listed prefixes, ranges and jumps have one shape whatever their spelling', async (t) => {
  const listing = {
    nftables: [
      { set: { name: 's1', type: 'ipv4_addr', flags: ['interval'], elem: [{ prefix: { addr: '192.0.2.0', len: 25 } }, '192.0.2.200', { range: ['203.0.113.1', '203.0.113.9'] }] } },
      { map: { name: 'ingress4', type: 'ipv4_addr', map: 'verdict', elem: [['192.0.2.7', { jump: { target: 'c1' } }], ['192.0.2.8', { drop: null }]] } },
      { chain: { name: 'c1' } },
      { rule: { chain: 'c1' } },
    ],
  };
  t.equal(shapeOfListing(listing), [
    'chain c1 1',
    'map ingress4 192.0.2.7>jump c1,192.0.2.8>drop',
    'set s1 192.0.2.0-192.0.2.127,192.0.2.200,203.0.113.1-203.0.113.9',
  ].join('\n'));
});

t.test('policy parts are refused when their names, verdicts or elements could not be nft text', async (t) => {
  const with_ = (policy: object) => () => nftRuleset({ allowedPeers: [], policy: { sets: [], maps: [], chains: [], ...policy } });
  const errors = [
    with_({ chains: [{ name: 'a b', rules: [] }] }),
    with_({ chains: [{ name: 'c', rules: ['accept\nflush ruleset'] }] }),
    with_({ chains: [{ name: 'c', rules: ['accept; flush ruleset'] }] }),
    with_({ maps: [{ name: 'm', type: 'ipv4_addr', elements: [{ key: '192.0.2.1', verdict: 'jump missing' }] }] }),
    with_({ sets: [{ name: 's', type: 'ipv4_addr', elements: ['192.0.2.0/24'] }] }),
    with_({ sets: [{ name: 's', type: 'ipv6_addr', interval: true, elements: ['192.0.2.0/24'] }] }),
    with_({ sets: [{ name: 's', type: 'ipv4_addr', interval: true, elements: ['192.0.2.9-192.0.2.1'] }] }),
  ].map((f) => {
    try {
      f();
      return 'accepted';
    } catch (err) {
      return (err as Error).message;
    }
  });
  t.same(errors, [
    'nft: chain name "a b" is not 1-31 letters, digits or _',
    'nft: chain c: a rule spans lines, holds a second statement or a comment',
    'nft: chain c: a rule spans lines, holds a second statement or a comment',
    'nft: map m: no chain missing',
    'nft: set s: 192.0.2.0/24 needs an interval set',
    'nft: set s: 192.0.2.0/24 is not an ipv6_addr',
    'nft: set s: "192.0.2.9-192.0.2.1" is not a range from low to high',
  ]);
});
