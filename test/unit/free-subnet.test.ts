import t from 'tap';
import { parseNetConf } from '../../src/config/parse.js';
import type { NetConf } from '../../src/config/netconf.js';
import { Cidr } from '../../src/core/cidr.js';
import { pickFreeSubnet } from '../../src/subnet/etcd/free-subnet.js';

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
  t.throws(() => pickFreeSubnet(small, ['10.5.1.0-24', '10.5.2.0-24', '10.5.3.0-24', '10.5.4.0-24']), /no free subnet: all 4 \/24 subnets/);
});

t.test('a huge IPv6 range is probed, not enumerated', async (t) => {
  // 2^32 /64s; built from the IPv4 one, only the addressing differs.
  const network = Cidr.parse('fd00:10::/32');
  const v6: NetConf = { ...small, network, subnetLen: 64, subnetMin: network.subnet(64, 1n), subnetMax: network.subnet(64, (1n << 32n) - 1n) };
  const picked = pickFreeSubnet(v6, ['fd00:10:0:1::-64']);
  t.equal(picked.prefixLen, 64);
  t.ok(network.covers(picked));
  t.not(picked.toString(), 'fd00:10:0:1::/64');
});
