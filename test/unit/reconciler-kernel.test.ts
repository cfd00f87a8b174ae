// Parsing what iproute2 prints (samples captured from iproute2 6.1) and
// sorting monitor events, without root.
import t from 'tap';
import type { Batch } from '../../src/dataplane/diff.js';
import {
  parseAddrs, parseBatchErrors, parseFdb, parseJsonSequence, parseLinks, parseNeighs, parseRoutes,
} from '../../src/dataplane/iproute.js';
import { isRelevantEvent } from '../../src/dataplane/monitor.js';

t.test('JSON documents back to back, as `ip -json -batch` prints them', async (t) => {
  t.same(parseJsonSequence('[{"a":"]["}]\n[]\n[{"b":"\\"]"}]\n'), [[{ a: '][' }], [], [{ b: '"]' }]]);
  t.same(parseJsonSequence(''), []);
});

t.test('links, with vxlan details and the UP flag', async (t) => {
  const json = JSON.parse(`[
    {"ifindex":3,"link":"a1","ifname":"a0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"link_type":"ether","address":"42:72:EB:76:ef:38","linkinfo":{"info_kind":"veth"}},
    {"ifindex":4,"ifname":"weft.1","flags":["BROADCAST","MULTICAST"],"mtu":1450,"link_type":"ether","address":"86:2d:00:d5:94:84","linkinfo":{"info_kind":"vxlan","info_data":{"id":1,"local":"10.9.0.1","link":"a0","port_range":{"low":0,"high":0},"port":8472,"learning":false,"ttl":0}}},
    {"ifindex":6,"ifname":"weft0","flags":["POINTOPOINT","MULTICAST","NOARP","UP"],"mtu":1472,"link_type":"none","linkinfo":{"info_kind":"tun","info_data":{"type":"tun"}}},
    {"ifindex":1,"ifname":"lo","flags":["LOOPBACK"],"mtu":65536,"link_type":"loopback","address":"00:00:00:00:00:00"}
  ]`);
  t.same(parseLinks(json), [
    { name: 'a0', mtu: 1500, up: true, kind: 'veth', mac: '42:72:eb:76:ef:38' },
    { name: 'weft.1', mtu: 1450, up: false, kind: 'vxlan', mac: '86:2d:00:d5:94:84', vxlan: { vni: 1, port: 8472, learning: false, local: '10.9.0.1', dev: 'a0' } },
    { name: 'weft0', mtu: 1472, up: true, kind: 'tun' },
    { name: 'lo', mtu: 65536, up: false, mac: '00:00:00:00:00:00' },
  ]);
  t.same(parseLinks('garbage'), []);
});

t.test('addresses: global scope only', async (t) => {
  const json = JSON.parse(`[{"ifname":"weft.1","addr_info":[
    {"family":"inet","local":"10.5.1.0","prefixlen":32,"scope":"global"},
    {"family":"inet6","local":"fe80::842d:ff:fed5:9484","prefixlen":64,"scope":"link"},
    {"family":"inet6","local":"fd00:0:0::5","prefixlen":64,"scope":"global"}]}]`);
  t.same(parseAddrs(json), [{ dev: 'weft.1', cidr: '10.5.1.0/32' }, { dev: 'weft.1', cidr: 'fd00::5/64' }]);
});

t.test('routes: normalised, ownership from the proto-147 listing', async (t) => {
  const owned = JSON.parse(`[
    {"dst":"default","gateway":"10.9.0.2","dev":"a0","flags":[]},
    {"dst":"10.11.0.0/24","gateway":"10.9.0.9","dev":"a0","flags":["onlink"]},
    {"dst":"10.12.0.7","dev":"weft0","scope":"link","flags":[]}]`);
  const all = JSON.parse(`[
    {"dst":"default","gateway":"10.9.0.2","dev":"a0","protocol":"weft","flags":[]},
    {"dst":"10.9.0.0/24","dev":"a0","protocol":"kernel","scope":"link","prefsrc":"10.9.0.1","flags":[]},
    {"dst":"10.11.0.0/24","gateway":"10.9.0.9","dev":"a0","protocol":"147","flags":["onlink"]},
    {"dst":"10.12.0.7","dev":"weft0","protocol":"147","scope":"link","flags":[]},
    {"dst":"10.13.0.0/24","gateway":"10.9.0.3","dev":"a0","protocol":"boot","flags":[]}]`);
  t.same(parseRoutes(owned, all, 4), [
    { dst: '0.0.0.0/0', owned: true, onlink: false, via: '10.9.0.2', dev: 'a0' },
    { dst: '10.11.0.0/24', owned: true, onlink: true, via: '10.9.0.9', dev: 'a0' },
    { dst: '10.12.0.7/32', owned: true, onlink: false, dev: 'weft0' },
    { dst: '10.9.0.0/24', owned: false, onlink: false, dev: 'a0' },
    { dst: '10.13.0.0/24', owned: false, onlink: false, via: '10.9.0.3', dev: 'a0' },
  ], 'a protocol printed by name (rt_protos) is still recognised as weft\'s');
  const v6 = JSON.parse('[{"dst":"default","via":{"family":"inet6","host":"fd00::1"},"dev":"a0","metric":1024,"flags":[]}]');
  t.same(parseRoutes(v6, v6, 6), [{ dst: '::/0', owned: true, onlink: false, via: 'fd00::1', dev: 'a0', metric: 1024 }]);
});

t.test('neighbours and FDB entries', async (t) => {
  t.same(parseNeighs(JSON.parse('[{"dst":"10.12.0.0","dev":"weft.1","lladdr":"AA:bb:cc:dd:ee:01","state":["PERMANENT"]},{"dst":"10.1.1.1","dev":"weft.1","state":["FAILED"]}]')),
    [{ dev: 'weft.1', ip: '10.12.0.0', mac: 'aa:bb:cc:dd:ee:01' }]);
  const filtered = JSON.parse('[{"mac":"aa:bb:cc:dd:ee:02","dst":"10.9.0.3","flags":["self"],"state":"permanent"},{"mac":"33:33:00:00:00:01","flags":["self"],"state":"permanent"}]');
  t.same(parseFdb(filtered, 'weft.1'), [{ dev: 'weft.1', mac: 'aa:bb:cc:dd:ee:02', dst: '10.9.0.3' }], 'entries without a remote skipped');
  t.same(parseFdb(JSON.parse('[{"mac":"aa:bb:cc:dd:ee:01","ifname":"weft.2","dst":"10.9.0.2","flags":["self"]}]')), [{ dev: 'weft.2', mac: 'aa:bb:cc:dd:ee:01', dst: '10.9.0.2' }]);
});

t.test('-force -batch errors are attributed to their lines', async (t) => {
  const stderr = 'Error: Nexthop has invalid gateway.\nCommand failed -:1\nCannot find device "nosuch"\nCommand failed -:3\nRTNETLINK answers: No such process\nCommand failed -:4\n';
  t.same([...parseBatchErrors(stderr)], [
    [1, 'Error: Nexthop has invalid gateway.'],
    [3, 'Cannot find device "nosuch"'],
    [4, 'RTNETLINK answers: No such process'],
  ]);
  t.same(parseBatchErrors('').size, 0);
});

t.test('monitor events: what can break weft state wakes the reconciler, churn does not', async (t) => {
  const want = { linkPrefix: 'weft', devs: new Set(['eth0']), dsts: new Set(['10.5.2.0/24', '0.0.0.0/0']) };
  const relevant = [
    'Deleted 10.10.0.0/24 via 10.9.0.2 dev a0 proto 147 ',
    'fd00:1::/64 dev a0 proto 147 metric 1024 pref medium',
    'Deleted 10.5.3.0/24 via 10.5.3.0 dev weft.1 onlink',
    'Deleted 7: weft.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN group default ',
    '3: eth0@if2: <BROADCAST,MULTICAST> mtu 1500 qdisc noqueue state DOWN group default ',
    'Deleted 10.9.0.2 dev weft.1 lladdr aa:bb:cc:dd:ee:01 NOARP PERMANENT ',
    '10.9.0.2 dev weft.1 lladdr aa:bb:cc:dd:ee:01 NOARP PERMANENT ',
    'Deleted 10.12.0.0 dev weft.1 FAILED ',
    '10.5.2.0/24 via 192.0.2.50 dev eth0 ',
    'unreachable 10.5.2.0/24 proto static',
    'Deleted default via 192.0.2.1 dev eth0 proto dhcp',
    '[ROUTE]Deleted 10.10.0.0/24 dev a0 proto 147',
  ];
  const noise = [
    '192.0.2.9 dev eth0 lladdr 02:00:00:00:00:09 REACHABLE ',
    '192.0.2.9 dev eth0 lladdr 02:00:00:00:00:09 STALE ',
    '10.12.0.5 dev weft.1 INCOMPLETE ',
    '10.77.0.0/16 via 192.0.2.7 dev eth0 proto static',
    '9: cni0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default ',
    '    link/ether 8a:cb:a0:3a:de:26 brd ff:ff:ff:ff:ff:ff',
    '',
  ];
  for (const line of relevant) t.ok(isRelevantEvent(line, want), `relevant: ${line.trim()}`);
  for (const line of noise) t.notOk(isRelevantEvent(line, want), `ignored: ${line.trim()}`);
});

t.test('a missing iproute2 or a missing capability ends in one line naming the fix', async (t) => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { Iproute } = await import('../../src/dataplane/iproute.js');
  const dir = mkdtempSync(join(tmpdir(), 'wdp-bin-'));
  const path = process.env.PATH;
  t.teardown(() => {
    process.env.PATH = path;
    rmSync(dir, { recursive: true, force: true });
  });
  const batch: Batch[] = [{ tool: 'ip', ops: [{ target: 'route', action: 'add', dst: '10.5.2.0/24', via: '192.0.2.2', onlink: false }] }];

  process.env.PATH = dir; // no ip here
  await t.rejects(new Iproute().apply(batch), { name: 'WeftError', message: /"ip" command was not found; install iproute2/ });

  // An `ip` that answers like the kernel does without CAP_NET_ADMIN.
  writeFileSync(join(dir, 'ip'), '#!/bin/sh\n/bin/cat >/dev/null\necho "RTNETLINK answers: Operation not permitted" >&2\necho "Command failed -:1" >&2\nexit 1\n', { mode: 0o755 });
  await t.rejects(new Iproute().apply(batch), { name: 'WeftError', message: /CAP_NET_ADMIN.*NET_ADMIN/ });

  // A refused line that is not about permissions is a failure of that line only.
  writeFileSync(join(dir, 'ip'), '#!/bin/sh\n/bin/cat >/dev/null\necho "Error: Nexthop has invalid gateway." >&2\necho "Command failed -:1" >&2\nexit 1\n', { mode: 0o755 });
  const res = await new Iproute().apply(batch);
  t.equal(res.applied, 0);
  t.same(res.failures.map((f) => f.error), ['Error: Nexthop has invalid gateway.']);
});
