// Which `ip monitor route` lines make BIRD rescan the kernel: a main-table
// route deleted inside the prefixes BIRD owns, and nothing else.
import t from 'tap';
import { isDeletedRouteEventInside, isDeletedRouteInside } from '../../backends/bgp/restore.js';
import { RT_TABLE_MAIN, type KernelEvent } from '../../src/dataplane/netlink.js';
import { Cidr } from '../../src/core/cidr.js';

const owned = [Cidr.parse('10.244.0.0/16'), Cidr.parse('203.0.113.0/24'), Cidr.parse('fd00:10::/56')];

/** [monitor line, what it is]. */
const TRIGGERS: [string, string][] = [
  ['Deleted 10.244.9.0/24 via 192.0.2.11 dev eth0 proto bird metric 32 ', 'a pod subnet route'],
  ['Deleted 203.0.113.0/25 via 192.0.2.254 dev eth0 proto bird metric 32', 'an AllowedPrefixes route'],
  ['Deleted 10.244.9.0/24 proto bird metric 32 ', 'the first line of a multipath route'],
  ['Deleted 203.0.113.7 via 192.0.2.254 dev eth0 proto bird metric 32', 'a host route (no /32 printed)'],
  ['Deleted fd00:10:0:9::/64 via fe80::1 dev eth0 proto bird metric 32 pref medium', 'an IPv6 route'],
  ['Deleted 10.244.9.0/24 via 192.0.2.11 dev eth0 table main proto bird metric 32', 'table main named'],
  ['Deleted 10.244.9.0/24 via 192.0.2.11 dev eth0 proto static metric 32', "an operator's foreign route going (BIRD's may take its place)"],
];
const IGNORED: [string, string][] = [
  ['10.244.9.0/24 via 192.0.2.11 dev eth0 proto bird metric 32', 'an added BIRD route (BIRD restoring one: no loop)'],
  ['Deleted 192.0.2.0/24 via 192.0.2.1 dev eth0 proto bird metric 32', 'a BIRD route outside the owned prefixes'],
  ['Deleted 10.0.0.0/8 via 192.0.2.1 dev eth0 proto bird metric 32', 'a BIRD route wider than the Network'],
  ['Deleted 10.244.9.0/24 via 192.0.2.11 dev eth0 table 100 proto bird metric 32', 'another table'],
  ['Deleted default via 192.0.2.1 dev eth0 proto bird metric 32', 'a default route'],
  ['Deleted broadcast 10.244.9.255 dev cni0 table local proto kernel scope link src 10.244.9.1', 'a local-table kernel route'],
  ['', 'an empty line'],
];

t.test('routes deleted inside the owned prefixes trigger a rescan', async (t) => {
  for (const [line, what] of TRIGGERS) t.ok(isDeletedRouteInside(line, owned), what);
});

t.test('everything else is ignored', async (t) => {
  for (const [line, what] of IGNORED) t.notOk(isDeletedRouteInside(line, owned), what);
});

t.test('netlink events: a deleted BIRD route of either family inside the owned prefixes triggers a rescan', async (t) => {
  const route = (family: 4 | 6, dst: string, prefixLen: number, op: 'add' | 'del'): KernelEvent =>
    ({ kind: 'route', op, family, dst, prefixLen, table: RT_TABLE_MAIN, protocol: 12, type: 1, ifindex: 2 }) as KernelEvent;
  const events: [KernelEvent, boolean, string][] = [
    [route(4, '10.244.9.0', 24, 'del'), true, 'an IPv4 pod subnet deleted'],
    [route(6, 'fd00:10:0:9::', 64, 'del'), true, 'an IPv6 pod subnet deleted'],
    [route(6, 'fd00:10:0:9::', 64, 'add'), false, 'an IPv6 pod subnet added (BIRD restoring it)'],
    [route(6, 'fd00:11::', 64, 'del'), false, 'an IPv6 route outside the owned prefixes'],
    [route(6, '::', 0, 'del'), false, 'the IPv6 default route'],
  ];
  t.same(events.map(([ev]) => isDeletedRouteEventInside(ev, owned)), events.map(([, want]) => want), events.map(([, , what]) => what).join('; '));
});
