import t from 'tap';
import { Cidr, IP } from '../../src/core/cidr.js';

t.test('parse and print', async (t) => {
  t.equal(Cidr.parse('10.5.0.0/16').toString(), '10.5.0.0/16');
  t.equal(Cidr.parse('fd00::/64').toString(), 'fd00::/64');
  t.throws(() => Cidr.parse('10.5.0.1/16'), /host bits/);
  t.throws(() => Cidr.parse('10.5.0.0/33'), /longer than \/32/);
  t.throws(() => Cidr.parse('10.5/16'), /dotted-quad/);
  t.throws(() => Cidr.parse('nonsense'), /not a CIDR/);
  t.equal(Cidr.parse('10.5.0.1/16', { loose: true }).toString(), '10.5.0.0/16');
});

t.test('subnet arithmetic, both families', async (t) => {
  const n = Cidr.parse('10.5.0.0/16');
  t.equal(n.subnet(24, 3n).toString(), '10.5.3.0/24');
  t.equal(n.indexOf(Cidr.parse('10.5.3.0/24')), 3n);
  t.ok(n.covers(Cidr.parse('10.5.3.0/24')));
  t.notOk(n.covers(Cidr.parse('10.6.3.0/24')));
  t.notOk(n.contains(IP.parse('fd00::1')));
  const v6 = Cidr.parse('fd00:10::/48');
  t.equal(v6.subnet(64, 2n).toString(), 'fd00:10:0:2::/64');
  t.equal(Cidr.fromKey('10.5.3.0-24').toString(), '10.5.3.0/24');
  t.equal(Cidr.parse('10.5.3.0/24').toKey(), '10.5.3.0-24');
  t.equal(Cidr.parse('10.5.3.0/24').last.toString(), '10.5.3.255');
});

t.test('IPv6: /64 subnets of a /56', async (t) => {
  const n = Cidr.parse('fd00:10:0:100::/56');
  t.equal(n.subnet(64, 0n).toString(), 'fd00:10:0:100::/64', 'the first');
  t.equal(n.subnet(64, 1n).toString(), 'fd00:10:0:101::/64', 'the second');
  t.equal(n.subnet(64, 255n).toString(), 'fd00:10:0:1ff::/64', 'the last');
  t.equal(n.indexOf(Cidr.parse('fd00:10:0:1ff::/64')), 255n);
  t.equal(n.size, 1n << 72n);
  t.equal(n.last.toString(), 'fd00:10:0:1ff:ffff:ffff:ffff:ffff');
  t.ok(n.covers(Cidr.parse('fd00:10:0:1ff::/64')));
  t.notOk(n.covers(Cidr.parse('fd00:10:0:200::/64')), 'the next /56 begins after the last /64');
  t.notOk(n.covers(Cidr.parse('fd00:10::/48')), 'a wider prefix is not inside');
  t.ok(n.overlaps(Cidr.parse('fd00:10::/48')), 'but overlaps');
  t.ok(n.contains(IP.parse('fd00:10:0:1ff::1')));
  t.notOk(n.contains(IP.parse('10.0.1.0')), 'never an address of the other family');
  t.notOk(Cidr.parse('0.0.0.0/0').overlaps(Cidr.parse('::/0')), 'the two families never overlap');
});

t.test('IPv6: flannel\'s key form, canonical text', async (t) => {
  t.equal(Cidr.parse('fd00:10:0:1::/64').toKey(), 'fd00:10:0:1::-64');
  t.equal(Cidr.fromKey('fd00:10:0:1::-64').toString(), 'fd00:10:0:1::/64');
  t.equal(Cidr.parse('FD00:0010:0000:0001:0000::/64').toString(), 'fd00:10:0:1::/64', 'lower case, zeros dropped');
  t.equal(IP.parse('2001:db8:0:0:1:0:0:1').toString(), '2001:db8::1:0:0:1', 'the longest run of zeros is the one compressed (RFC 5952, as Go prints it)');
  t.equal(IP.parse('2001:db8:0:1:1:1:1:1').toString(), '2001:db8:0:1:1:1:1:1', 'a single zero group is not compressed');
});

t.test('IPv6: the edges of the 128-bit space', async (t) => {
  const all = Cidr.parse('::/0');
  t.equal(all.size, 1n << 128n);
  t.equal(all.subnet(64, (1n << 64n) - 1n).toString(), 'ffff:ffff:ffff:ffff::/64', 'the last /64 of all');
  t.equal(all.last.toString(), 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff');
  t.equal(Cidr.parse('fd00::1/128').size, 1n, 'a /128 is one address');
  t.throws(() => IP.parse('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff').add(1), /out of range for IPv6/, 'no wrap past the top');
  t.throws(() => Cidr.parse('fd00::/129'), /longer than \/128/);
  t.throws(() => Cidr.parse('fd00::1/64'), /host bits set \(did you mean fd00::\/64\?\)/);
});

t.test('a zone is refused, not dropped', async (t) => {
  t.throws(() => IP.parse('fe80::1%eth0'), /"fe80::1%eth0" has a zone/);
});
