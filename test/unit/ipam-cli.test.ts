// `weft ipam`: the tables it prints from weft-ipam's store, and its one-line
// errors for a missing or damaged store (through the built CLI).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { formatIpam, readNetworks } from '../../src/cli/ipam.js';
import { storePaths, writeState } from '../../src/ipam/store.js';
import { emptyState, type IpamState } from '../../src/ipam/state.js';

const entry = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'ic-ipam-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function weft(...args: string[]) {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  return spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8', env, timeout: 30_000 });
}

const SINCE = '2026-01-01T00:00:00.000Z';
const state: IpamState = {
  ...emptyState(),
  allocations: [
    { address: '10.244.7.2', family: 4, containerId: 'aaaaaaaaaaaaaaaa', ifname: 'eth0', netns: '/n/a', since: SINCE, pinned: false },
    { address: '10.244.7.17', family: 4, containerId: 'bbbb', ifname: 'eth0', netns: '/n/b', since: SINCE, pinned: true, mac: '02:00:00:00:00:17', pod: { namespace: 'db', name: 'pg-0' } },
    { address: '10.244.9.5', family: 4, containerId: 'cccc', ifname: 'eth0', netns: '/n/c', since: SINCE, pinned: true, borrowed: true, pod: { namespace: 'db', name: 'pg-1' } },
  ],
  reservations: [{ address: '10.244.7.18', family: 4, pod: { namespace: 'db', name: 'pg-2' }, since: SINCE }],
  borrowedOut: ['10.244.7.30'],
  lastReconcile: { at: SINCE, freed: [{ address: '10.244.7.9', containerId: 'dddd', reason: 'netns-gone' }] },
};

writeState(storePaths(dir, 'weft').state, state);
writeState(storePaths(dir, 'other').state, emptyState());
mkdirSync(join(dir, 'not-a-store'));

t.test('each network: allocations with their kind, reservations, borrowed-out addresses, the last reconcile', async (t) => {
  const networks = readNetworks(dir);
  t.same(networks.map((n) => n.network), ['other', 'weft'], 'directories without a state.json are not networks');
  t.equal(formatIpam(networks.slice(1), [{ node: 'n2', subnet: '10.244.9.0/24', borrowed: ['10.244.7.30'] }]), [
    `network weft (${join(dir, 'weft', 'state.json')})`,
    '  ADDRESS      MAC                CONTAINER     IFNAME  POD      SINCE                     KIND',
    '  10.244.7.2   -                  aaaaaaaaaaaa  eth0    -        2026-01-01T00:00:00.000Z  -',
    '  10.244.7.17  02:00:00:00:00:17  bbbb          eth0    db/pg-0  2026-01-01T00:00:00.000Z  pinned',
    '  10.244.9.5   -                  cccc          eth0    db/pg-1  2026-01-01T00:00:00.000Z  borrowed',
    '  reserved 10.244.7.18 for pod db/pg-2 since 2026-01-01T00:00:00.000Z',
    '  borrowed by other nodes: 10.244.7.30',
    '  last reconcile 2026-01-01T00:00:00.000Z: freed 10.244.7.9 (container dddd, netns-gone)',
    'borrowed addresses in the cluster',
    '  NODE  SUBNET         BORROWED',
    '  n2    10.244.9.0/24  10.244.7.30',
  ].join('\n'));
});

t.test('--json carries the whole state per network', async (t) => {
  const r = weft('ipam', '--ipam-dir', dir, '--network', 'weft', '--json');
  t.same({ code: r.status, doc: JSON.parse(r.stdout) }, { code: 0, doc: { networks: [{ network: 'weft', file: join(dir, 'weft', 'state.json'), ...state }] } });
});

t.test('a missing store, an unknown network or a damaged state.json is one line and a non-zero exit', async (t) => {
  writeFileSync(join(dir, 'bad.json'), '');
  mkdirSync(join(dir, 'broken'));
  writeFileSync(join(dir, 'broken', 'state.json'), '{"version": 1, "allocations": [');
  const runs = [weft('ipam', '--ipam-dir', join(dir, 'nope')), weft('ipam', '--ipam-dir', dir, '--network', 'absent'), weft('ipam', '--ipam-dir', dir)];
  t.same(runs.map((r) => [r.status, r.stderr.trim().split('\n').length]), [[1, 1], [1, 1], [1, 1]], 'each fails with one line');
  t.match(runs.map((r) => r.stderr), [/no weft-ipam store at .*nope; pass --ipam-dir/, /network absent has no state in/, /IPAM state .*broken\/state\.json is corrupt \(not JSON/]);
});
