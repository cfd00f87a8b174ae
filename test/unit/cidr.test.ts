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
