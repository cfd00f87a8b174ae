import t from 'tap';
import { parseNetConf } from '../../src/config/parse.js';
import type { SubnetRange } from '../../src/config/netconf.js';
import { Cidr } from '../../src/core/cidr.js';
import { ownKeySubnets, pickFreeSubnet } from '../../src/subnet/etcd/free-subnet.js';

// Four leasable /24s: 10.5.1.0 .. 10.5.4.0.
const small = parseNetConf(JSON.stringify({ Network: '10.5.0.0/16', SubnetMin: '10.5.1.0', SubnetMax: '10.5.4.0', Backend: { Type: 'host-gw' } }));

t.test('the preferred subnet when it is free and leasable', async (t) => {
  t.equal(pickFreeSubnet(small, [], Cidr.parse('10.5.3.0/24')).toString(), '10.5.3.0/24');
  const other = pickFreeSubnet(small, ['10.5.3.0-24'], Cidr.parse('10.5.3.0/24')).toString();
  t.not(other, '10.5.3.0/24', 'taken: another one');
  t.not(pickFreeSubnet(small, [], Cidr.parse('10.5.9.0/24')).toString(), '10.5.9.0/24', 'outside [SubnetMin, SubnetMax]: ignored');
});

t.test('only free subnets, and every key occupies its subnet whatever its value', async (t) => {
  for (let i = 0; i < 20; i++) t.equal(pickFreeSubnet(small, ['10.5.1.0-24', '10.5.2.0-24', '10.5.4.0-24']).toString(), '10.5.3.0/24');
  const names = ['garbage', '10.5.1.0-25', '10.6.1.0-24', '10.5.1.0-24'];
  for (let i = 0; i < 20; i++) t.not(pickFreeSubnet(small, names).toString(), '10.5.1.0/24');
});

t.test("a flannel dual-stack key occupies its IPv4 subnet", async (t) => {
  t.equal(pickFreeSubnet(small, ['10.5.1.0-24', '10.5.2.0-24&fd00:5:2::-64', '10.5.4.0-24']).toString(), '10.5.3.0/24');
});

t.test('a full range ends in one line naming the fix', async (t) => {
  t.throws(() => pickFreeSubnet(small, ['10.5.1.0-24', '10.5.2.0-24', '10.5.3.0-24', '10.5.4.0-24']), /^no free subnet for this node: SubnetMin 10\.5\.1\.0 and SubnetMax 10\.5\.4\.0 allow 4 \/24 subnets and all are leased or reserved; widen SubnetMin\/SubnetMax/);
});

/** net-conf's IPv6 range, read by the config parser. */
function ipv6Range(keys: Record<string, unknown>): SubnetRange {
  const conf = parseNetConf(JSON.stringify({ Network: '10.5.0.0/16', EnableIPv6: true, Backend: { Type: 'host-gw' }, ...keys }));
  if (!conf.ipv6) throw new Error('no IPv6 range');
  return conf.ipv6;
}

// Four leasable /64s of a /56: fd00:10:0:101:: .. fd00:10:0:104::.
const four6 = ipv6Range({ IPv6Network: 'fd00:10:0:100::/56', IPv6SubnetMin: 'fd00:10:0:101::', IPv6SubnetMax: 'fd00:10:0:104::' });

t.test('IPv6: the preferred /64 when it is free and leasable', async (t) => {
  t.equal(pickFreeSubnet(four6, [], Cidr.parse('fd00:10:0:103::/64')).toString(), 'fd00:10:0:103::/64');
});

t.test('IPv6: the one free /64 is the one picked', async (t) => {
  const taken = ['fd00:10:0:101::-64', 'fd00:10:0:102::-64', 'fd00:10:0:104::-64'];
  t.equal(pickFreeSubnet(four6, taken).toString(), 'fd00:10:0:103::/64');
});

t.test('IPv6: a preferred subnet of the other family is ignored', async (t) => {
  const taken = ['fd00:10:0:101::-64', 'fd00:10:0:102::-64', 'fd00:10:0:104::-64'];
  t.equal(pickFreeSubnet(four6, taken, Cidr.parse('10.5.3.0/24')).toString(), 'fd00:10:0:103::/64');
});

t.test('IPv6: a preferred subnet outside [IPv6SubnetMin, IPv6SubnetMax] is ignored', async (t) => {
  const taken = ['fd00:10:0:101::-64', 'fd00:10:0:102::-64', 'fd00:10:0:104::-64'];
  t.equal(pickFreeSubnet(four6, taken, Cidr.parse('fd00:10:0:105::/64')).toString(), 'fd00:10:0:103::/64');
});

t.test('flannel\'s dual-stack key occupies its IPv6 subnet', async (t) => {
  const taken = ['10.5.1.0-24&fd00:10:0:101::-64', '10.5.2.0-24&fd00:10:0:102::-64', '10.5.4.0-24&fd00:10:0:104::-64'];
  t.equal(pickFreeSubnet(four6, taken).toString(), 'fd00:10:0:103::/64');
});

t.test('flannel\'s dual-stack key occupies its IPv4 subnet', async (t) => {
  const taken = ['10.5.1.0-24&fd00:10:0:101::-64', '10.5.2.0-24&fd00:10:0:102::-64', '10.5.4.0-24&fd00:10:0:104::-64'];
  t.equal(pickFreeSubnet(small, taken).toString(), '10.5.3.0/24');
});

t.test('a dual-stack key with a broken half still occupies the other half', async (t) => {
  const taken = ['10.5.1.0-24&garbage', '10.5.2.0-24', '10.5.4.0-24'];
  t.equal(pickFreeSubnet(small, taken).toString(), '10.5.3.0/24');
});

t.test('IPv6: the default edges of a /56', async (t) => {
  const defaults = ipv6Range({ IPv6Network: 'fd00:10:0:100::/56' });
  const allButEdges: string[] = [];
  for (let i = 2; i < 255; i++) allButEdges.push(`fd00:10:0:1${i.toString(16).padStart(2, '0')}::-64`);
  const lastTaken = [...allButEdges, 'fd00:10:0:1ff::-64'];
  const firstTaken = [...allButEdges, 'fd00:10:0:101::-64'];
  t.equal(pickFreeSubnet(defaults, lastTaken).toString(), 'fd00:10:0:101::/64', 'the lowest leasable is the second /64');
  t.equal(pickFreeSubnet(defaults, firstTaken).toString(), 'fd00:10:0:1ff::/64', 'the highest leasable is the last /64');
  t.throws(() => pickFreeSubnet(defaults, [...lastTaken, 'fd00:10:0:101::-64']), /^no free subnet for this node: IPv6SubnetMin fd00:10:0:101:: and IPv6SubnetMax fd00:10:0:1ff:: allow 255 \/64 subnets and all are leased or reserved/);
});

t.test('IPv6: the first /64 of the network is never picked by default', async (t) => {
  const defaults = ipv6Range({ IPv6Network: 'fd00:10::/62' });
  const taken = ['fd00:10:0:1::-64', 'fd00:10:0:2::-64'];
  t.equal(pickFreeSubnet(defaults, taken).toString(), 'fd00:10:0:3::/64');
});

t.test('IPv6: the top of the address space', async (t) => {
  const top = ipv6Range({ IPv6Network: 'ffff:ffff:ffff:ff00::/56', IPv6SubnetMin: 'ffff:ffff:ffff:ffff::' });
  t.equal(pickFreeSubnet(top, []).toString(), 'ffff:ffff:ffff:ffff::/64');
});

t.test('IPv6: a full range names the IPv6 keys to widen', async (t) => {
  const full = ['fd00:10:0:101::-64', 'fd00:10:0:102::-64', 'fd00:10:0:103::-64', 'fd00:10:0:104::-64'];
  t.throws(
    () => pickFreeSubnet(four6, full),
    {
      name: 'NoFreeSubnetError',
      message: 'no free subnet for this node: IPv6SubnetMin fd00:10:0:101:: and IPv6SubnetMax fd00:10:0:104:: allow 4 /64 subnets and all are leased or reserved; widen IPv6SubnetMin/IPv6SubnetMax (or IPv6Network) in net-conf, or delete stale leases',
    },
  );
});

t.test('IPv6: keys of another length, the other family or outside the range leave the range free', async (t) => {
  const taken = ['fd00:10:0:101::-64', 'fd00:10:0:102::-64', 'fd00:10:0:104::-64', 'fd00:10:0:103::-80', 'fd00:10:0:203::-64', '10.5.3.0-24'];
  t.equal(pickFreeSubnet(four6, taken).toString(), 'fd00:10:0:103::/64');
});

t.test('a huge IPv6 range is probed, not enumerated', async (t) => {
  // 2^32 /64s: more than are ever listed, so a random probe.
  const huge = ipv6Range({ IPv6Network: 'fd00:10::/32' });
  const picked = pickFreeSubnet(huge, ['fd00:10:0:1::-64']);
  t.equal(picked.prefixLen, 64);
  t.ok(huge.network.covers(picked));
  t.not(picked.toString(), 'fd00:10:0:1::/64');
});

t.test('a probe of a huge IPv6 range stays at or above IPv6SubnetMin', async (t) => {
  // 2^17 /64s from fd00:10:fffe:: up: past the enumeration limit, so probed.
  const upper = ipv6Range({ IPv6Network: 'fd00:10::/32', IPv6SubnetMin: 'fd00:10:fffe::' });
  const picked = pickFreeSubnet(upper, []);
  t.ok(upper.network.indexOf(picked) >= upper.network.indexOf(upper.subnetMin), String(picked));
});

// ownKeySubnets: which subnets a node's own key names, per shape change.
const dualConf = parseNetConf(
  JSON.stringify({ Network: '10.5.0.0/16', SubnetMin: '10.5.1.0', SubnetMax: '10.5.4.0', EnableIPv6: true, IPv6Network: '2001:db8:1000::/56', IPv6SubnetMin: '2001:db8:1000:1::', IPv6SubnetMax: '2001:db8:1000:4::', Backend: { Type: 'vxlan' } }),
);
const v6range = dualConf.ipv6!;
/** Keys of other nodes: every leasable subnet but 10.5.4.0/24 and 2001:db8:1000:4::/64 is taken. */
const otherKeys = ['10.5.1.0-24&2001:db8:1000:1::-64', '10.5.2.0-24&2001:db8:1000:2::-64', '10.5.3.0-24&2001:db8:1000:3::-64'];
const shown = (s: { subnet: Cidr; ipv6Subnet?: Cidr }) => [s.subnet, s.ipv6Subnet].filter((c) => c !== undefined).join(',');
const cidr = (text: string) => Cidr.parse(text);

t.test('own key: upgrade keeps the IPv4 subnet, downgrade drops the IPv6 one, a dual key stays', async (t) => {
  const mine = { subnet: cidr('10.5.9.0/24') }; // outside SubnetMin/Max: an own subnet is kept all the same
  t.strictSame(
    {
      upgrade: shown(ownKeySubnets(dualConf, v6range, otherKeys, mine)),
      upgradePrefer: shown(ownKeySubnets(dualConf, v6range, otherKeys.slice(0, 2), mine, { ipv6Subnet: cidr('2001:db8:1000:3::/64') })),
      stays: shown(ownKeySubnets(dualConf, v6range, otherKeys, { ...mine, ipv6Subnet: cidr('2001:db8:1000:4::/64') })),
      downgrade: shown(ownKeySubnets(dualConf, undefined, otherKeys, { ...mine, ipv6Subnet: cidr('2001:db8:1000:4::/64') })),
      single: shown(ownKeySubnets(dualConf, undefined, otherKeys, mine)),
    },
    {
      upgrade: '10.5.9.0/24,2001:db8:1000:4::/64',
      upgradePrefer: '10.5.9.0/24,2001:db8:1000:3::/64',
      stays: '10.5.9.0/24,2001:db8:1000:4::/64',
      downgrade: '10.5.9.0/24',
      single: '10.5.9.0/24',
    },
  );
});

t.test('own key: an IPv6 subnet no longer leasable, or now another key\'s, is replaced by a free one', async (t) => {
  const mine = (v6: string) => ({ subnet: cidr('10.5.9.0/24'), ipv6Subnet: cidr(v6) });
  t.strictSame(
    {
      outsideNetwork: shown(ownKeySubnets(dualConf, v6range, otherKeys, mine('2001:db8:2000::/64'))),
      otherLength: shown(ownKeySubnets(dualConf, v6range, otherKeys, mine('2001:db8:1000:4::/80'))),
      takenByAnother: shown(ownKeySubnets(dualConf, v6range, otherKeys, mine('2001:db8:1000:3::/64'))),
    },
    { outsideNetwork: '10.5.9.0/24,2001:db8:1000:4::/64', otherLength: '10.5.9.0/24,2001:db8:1000:4::/64', takenByAnother: '10.5.9.0/24,2001:db8:1000:4::/64' },
  );
});

t.test('own key: a new node takes the preferred pair when free, else free ones', async (t) => {
  const prefer = { subnet: cidr('10.5.3.0/24'), ipv6Subnet: cidr('2001:db8:1000:3::/64') };
  t.strictSame(
    {
      free: shown(ownKeySubnets(dualConf, v6range, [], undefined, prefer)),
      taken: shown(ownKeySubnets(dualConf, v6range, otherKeys, undefined, prefer)),
    },
    { free: '10.5.3.0/24,2001:db8:1000:3::/64', taken: '10.5.4.0/24,2001:db8:1000:4::/64' },
  );
});
