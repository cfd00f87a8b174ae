// `birdc show protocols all` of BIRD 2.0.12, captured from weft-generated
// configs (established, passive, connecting, eBGP to gobgpd, disabled, GR).
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseBgpSessions } from '../../backends/bgp/status.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'bgp');
const sample = (name: string): Promise<string> => readFile(join(FIXTURES, name), 'utf8');

t.test('sessions of a running node: only BGP protocols, with state, peer and routes', async (t) => {
  const sessions = await parseBgpSessions(await sample('show-protocols-all.txt'));
  t.same(
    sessions.map((s) => [s.name, s.peer, s.asn, s.state, s.protocolState, s.info, s.importedRoutes, s.exportedRoutes]),
    [
      ['node_198_51_100_2', '198.51.100.2', 64512, 'Established', 'up', '', 1, 1],
      ['node_198_51_100_5', '198.51.100.5', 64512, 'Passive', 'start', '', 0, 0],
      ['node_198_51_100_20', '198.51.100.20', 64512, 'Connect', 'start', 'Socket: No route to host', 0, 0],
      ['ext_198_51_100_254', '198.51.100.254', 65000, 'Established', 'up', '', 1, 1],
    ],
  );
  t.equal(sessions[0]?.since, '2026-11-22 03:33:43', 'since keeps the date and time (timeformat iso long)');
});

t.test('a disabled session and one in graceful restart', async (t) => {
  const sessions = parseBgpSessions(await sample('show-protocols-all-down.txt'));
  const byName = new Map(sessions.map((s) => [s.name, s]));
  t.match(byName.get('node_198_51_100_2'), { state: 'Passive', info: 'Socket: Connection closed', importedRoutes: 1, exportedRoutes: 0 });
  t.match(byName.get('ext_198_51_100_254'), { state: 'Down', protocolState: 'down', info: '', peer: '198.51.100.254', importedRoutes: 0 });
});

t.test('other time formats and odd input', async (t) => {
  const short = [
    'BIRD 2.0.12 ready.',
    'Name       Proto      Table      State  Since         Info',
    'peer1      BGP        ---        up     12:01:02.123  Established   ',
    '  BGP state:          Established',
    '    Neighbor address: fe80::1%eth0',
    'peer2      BGP        ---        start  2024-01-02    Active        Socket: Connection refused',
    '  BGP state:          Active',
    '    Last error:       Socket: Connection refused',
    'static1    Static     master4    up     2024-01-02    ',
  ].join('\n');
  const s = parseBgpSessions(short);
  t.same(
    s.map((x) => [x.name, x.since, x.state, x.peer, x.info]),
    [
      ['peer1', '12:01:02.123', 'Established', 'fe80::1', ''],
      ['peer2', '2024-01-02', 'Active', '', 'Socket: Connection refused'],
    ],
  );
  t.same(parseBgpSessions(''), []);
  t.same(parseBgpSessions('Unable to connect to server control socket (/x): No such file or directory'), []);
});

t.test('readiness: every session Established; after the grace period a down session is named as a failure', async (t) => {
  const { sessionReadiness } = await import('../../backends/bgp/index.js');
  const { IP } = await import('../../src/core/cidr.js');
  const configured = ['a', 'b', 'c'].map((name, i) => ({ name, peer: IP.parse(`198.51.100.${i + 1}`) }));
  const live = (states: string[]) => states.map((state, i) => ({ name: configured[i]!.name, state }));
  const at = (now: number, states: string[]) => sessionReadiness({ configured, live: live(states), startedAt: 1000, graceMs: 60_000, now });
  t.equal(at(2000, ['Established', 'Established', 'Established']), undefined);
  t.equal(at(2000, ['Established', 'Active', 'Passive']), '1/3 BGP sessions established (waiting for 198.51.100.2, 198.51.100.3)');
  t.equal(at(61_000, ['Established', 'Active', 'Passive']), 'BGP sessions not Established after 60 s: 198.51.100.2 (Active), 198.51.100.3 (Passive); check that peer and its BIRD',
    'after the grace period a configured session that is down makes the node not ready, named with its state');
  t.equal(at(61_000, ['Established', 'Established', 'Established']), undefined, 'all Established after the grace period: ready');
  t.equal(sessionReadiness({ configured: [], live: [], startedAt: undefined, graceMs: 1, now: 0 }), undefined, 'a lone node has nothing to wait for');
});

t.test('weft status: sessions counted per family, and the kernel routes BIRD installed in each family', async (t) => {
  const { formatBgpStatus } = await import('../../backends/bgp/node.js');
  const session = (name: string, peer: string, state: string) => ({ name, peer, asn: 64512, state, protocolState: 'up', since: '12:00:00', info: '', importedRoutes: 1, exportedRoutes: 1 });
  const lines = formatBgpStatus({
    socket: '/run/weft/bird/bird.ctl',
    sessions: [session('node_198_51_100_2', '198.51.100.2', 'Established'), session('node_2001_db8__2', '2001:db8::2', 'Active'), session('node_2001_db8__3', '', 'Established')],
    routes: [
      { family: 4, routes: [{ dst: '10.5.2.0/24', via: '198.51.100.2', dev: 'eth0' }] },
      { family: 6, routes: [{ dst: '2001:db8:1000:2::/64', via: '2001:db8::2', dev: 'eth0' }] },
    ],
  });
  t.same(
    [lines[0], ...lines.filter((l) => /^routes|^  \S+ via/.test(l))],
    [
      'bgp      3 sessions, 2 established (IPv4 1/1, IPv6 1/2) (birdc -s /run/weft/bird/bird.ctl)',
      'routes   IPv4: 1 from BIRD (proto bird)',
      '  10.5.2.0/24 via 198.51.100.2 dev eth0',
      'routes   IPv6: 1 from BIRD (proto bird)',
      '  2001:db8:1000:2::/64 via 2001:db8::2 dev eth0',
    ],
  );
});
