// Which `ip monitor route` lines make BIRD rescan the kernel: a main-table
// route deleted inside the prefixes BIRD owns, and nothing else.
import t from 'tap';
import { isDeletedRouteInside } from '../../backends/bgp/restore.js';
import { Cidr } from '../../src/subnet/cidr.js';

const owned = [Cidr.parse('10.244.0.0/16'), Cidr.parse('203.0.113.0/24'), Cidr.parse('fd00:10::/56')];

t.test('routes deleted inside the owned prefixes trigger a rescan', async (t) => {
  t.ok(isDeletedRouteInside('Deleted 10.244.9.0/24 via 192.0.2.11 dev eth0 proto bird metric 32 ', owned), 'a pod subnet route');
  t.ok(isDeletedRouteInside('Deleted 203.0.113.0/25 via 192.0.2.254 dev eth0 proto bird metric 32', owned), 'an AllowedPrefixes route');
  t.ok(isDeletedRouteInside('Deleted 10.244.9.0/24 proto bird metric 32 ', owned), 'the first line of a multipath route');
  t.ok(isDeletedRouteInside('Deleted 203.0.113.7 via 192.0.2.254 dev eth0 proto bird metric 32', owned), 'a host route (no /32 printed)');
  t.ok(isDeletedRouteInside('Deleted fd00:10:0:9::/64 via fe80::1 dev eth0 proto bird metric 32 pref medium', owned), 'an IPv6 route');
  t.ok(isDeletedRouteInside('Deleted 10.244.9.0/24 via 192.0.2.11 dev eth0 table main proto bird metric 32', owned), 'table main named');
  t.ok(isDeletedRouteInside('Deleted 10.244.9.0/24 via 192.0.2.11 dev eth0 proto static metric 32', owned), "an operator's foreign route going (BIRD's may take its place)");
});

t.test('everything else is ignored', async (t) => {
  t.notOk(isDeletedRouteInside('10.244.9.0/24 via 192.0.2.11 dev eth0 proto bird metric 32', owned), 'an added BIRD route (BIRD restoring one: no loop)');
  t.notOk(isDeletedRouteInside('Deleted 192.0.2.0/24 via 192.0.2.1 dev eth0 proto bird metric 32', owned), 'a BIRD route outside the owned prefixes');
  t.notOk(isDeletedRouteInside('Deleted 10.0.0.0/8 via 192.0.2.1 dev eth0 proto bird metric 32', owned), 'a BIRD route wider than the Network');
  t.notOk(isDeletedRouteInside('Deleted 10.244.9.0/24 via 192.0.2.11 dev eth0 table 100 proto bird metric 32', owned), 'another table');
  t.notOk(isDeletedRouteInside('Deleted default via 192.0.2.1 dev eth0 proto bird metric 32', owned), 'a default route');
  t.notOk(isDeletedRouteInside('Deleted broadcast 10.244.9.255 dev cni0 table local proto kernel scope link src 10.244.9.1', owned), 'a local-table kernel route');
  t.notOk(isDeletedRouteInside('', owned), 'an empty line');
});
