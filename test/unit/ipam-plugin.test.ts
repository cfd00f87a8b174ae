// weft-ipam, the CNI plugin over the IPAM core: its config and CNI_ARGS
// (hostile values included), the CNI errors it maps the allocator's refusals
// to, the result's shape (normal and borrowed), GC and the in-ADD reclaim, on
// a store in a temporary directory.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { IpamError } from '../../src/ipam/allocator.js';
import { readState, storePaths, writeState } from '../../src/ipam/store.js';
import { emptyState, type Allocation } from '../../src/ipam/state.js';
import { ipamAdd, ipamCniError, ipamResult, parseIpamConf, runIpam } from '../../src/cni/ipam-plugin.js';
import { parseCniArgs, podOfCniArgs } from '../../src/cni/protocol.js';

const dir = mkdtempSync(join(tmpdir(), 'ic-ipam-unit-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

let stores = 0;
/** A network config as the bridge plugin passes it on, each with a store of its own. */
function netConf(ipam: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Record<string, unknown> {
  stores += 1;
  return {
    cniVersion: '1.0.0',
    name: `net${stores}`,
    type: 'bridge',
    bridge: 'cni0',
    ipam: {
      type: 'weft-ipam',
      dataDir: dir,
      ranges: [[{ subnet: '10.244.7.0/24', gateway: '10.244.7.1' }]],
      routes: [{ dst: '10.244.0.0/16', gw: '10.244.7.1' }, { dst: '0.0.0.0/0', gw: '10.244.7.1' }],
      networks: ['10.244.0.0/16'],
      ...ipam,
    },
    ...extra,
  };
}

function env(command: string, containerId: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { CNI_COMMAND: command, CNI_CONTAINERID: containerId, CNI_IFNAME: 'eth0', CNI_NETNS: `/var/run/netns/${containerId}`, CNI_PATH: '/nowhere', ...extra };
}

async function call(command: string, conf: Record<string, unknown>, containerId = 'c1', extra: Record<string, string> = {}) {
  const r = await runIpam({ env: env(command, containerId, extra), stdin: JSON.stringify(conf) });
  return { ...r, json: r.stdout ? JSON.parse(r.stdout) : undefined };
}

function stateOf(conf: Record<string, unknown>) {
  return readState(storePaths(dir, conf.name as string).state);
}

t.test('the ipam config is checked: unknown keys and bad values are one CNI error naming the key', async (t) => {
  const parsed = parseIpamConf(netConf({ requested: ['10.244.9.17'], mac: '02:AA:00:00:00:01', pod: { namespace: 'db', name: 'pg-0', uid: 'u1' } }));
  t.same([parsed.ranges.map((r) => `${r.subnet} ${r.gateway}`), parsed.networks.map(String), parsed.requested.map(String), parsed.mac, parsed.pod],
    [['10.244.7.0/24 10.244.7.1'], ['10.244.0.0/16'], ['10.244.9.17'], '02:aa:00:00:00:01', { namespace: 'db', name: 'pg-0', uid: 'u1' }]);
  const cases: Array<[Record<string, unknown>, number, RegExp]> = [
    [{ rangeStart: '10.244.7.5' }, 2, /unknown key "ipam\.rangeStart" in the weft-ipam config/],
    [{ dataDir: 'relative' }, 7, /"ipam\.dataDir" must be an absolute path/],
    [{ ranges: [] }, 7, /names no subnet/],
    [{ ranges: [[{ subnet: '10.244.7.0/99' }]] }, 7, /"ipam\.ranges\[0\]\[0\]\.subnet" "10\.244\.7\.0\/99" is not a CIDR/],
    [{ ranges: [[{ subnet: '10.244.7.0/24', gateway: '10.9.9.1' }]] }, 7, /"ipam\.ranges\[0\]\[0\]\.gateway" 10\.9\.9\.1 is outside its subnet 10\.244\.7\.0\/24/],
    [{ routes: [{ dst: 'x' }] }, 7, /"ipam\.routes\[0\]\.dst" "x" is not a CIDR/],
    [{ requested: ['$(reboot)'] }, 7, /"ipam\.requested\[0\]" "\$\(reboot\)" is not an IP address/],
    [{ mac: 'zz' }, 7, /"ipam\.mac" must be a MAC address/],
    [{ pod: { namespace: '../etc', name: 'x' } }, 7, /"ipam\.pod" \.\.\/etc\/x is not a Kubernetes namespace and name/],
  ];
  const got = await Promise.all(cases.map(async ([ipam]) => {
    const r = await call('ADD', netConf(ipam));
    return [r.exitCode, r.json.code, r.json.msg];
  }));
  t.same(got.map(([exit, code, msg], i) => [exit, code, cases[i]![2].test(String(msg)) || msg]), cases.map(([, code]) => [1, code, true]),
    'each refused with its code and a message naming the key');
  t.same(got.filter(([, , msg]) => String(msg).includes('\n')), [], 'each message one line');
});

t.test('CNI_ARGS as kubelet writes them name the pod; hostile values never do', async (t) => {
  const kubelet = podOfCniArgs(parseCniArgs('IgnoreUnknown=1;K8S_POD_NAMESPACE=db;K8S_POD_NAME=pg-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=1f2e-33'));
  const hostile = [
    'K8S_POD_NAMESPACE=../../etc;K8S_POD_NAME=passwd',
    'K8S_POD_NAMESPACE=db;K8S_POD_NAME=a/b',
    'K8S_POD_NAMESPACE=db;K8S_POD_NAME=',
    'K8S_POD_NAMESPACE;K8S_POD_NAME=x',
    '=db;;;K8S_POD_NAME=x',
    `K8S_POD_NAMESPACE=db;K8S_POD_NAME=${'a'.repeat(300)}`,
    'K8S_POD_NAMESPACE=DB;K8S_POD_NAME=x',
    'K8S_POD_NAMESPACE=db\nK8S_POD_NAME=x',
  ].map((a) => podOfCniArgs(parseCniArgs(a)));
  const badUid = podOfCniArgs(parseCniArgs('K8S_POD_NAMESPACE=db;K8S_POD_NAME=x;K8S_POD_UID=../x'));
  t.same({ kubelet, hostile, badUid, eq: parseCniArgs('K=a=b').get('K') }, {
    kubelet: { namespace: 'db', name: 'pg-0', uid: '1f2e-33' },
    hostile: hostile.map(() => undefined),
    badUid: { namespace: 'db', name: 'x' },
    eq: 'a=b',
  });
});

t.test('the allocator\'s refusals map to CNI codes: exhausted 11, conflict 110, invalid 111', async (t) => {
  const errs = (['exhausted', 'conflict', 'invalid'] as const).map((k) => ipamCniError(new IpamError(k, `m ${k}`)));
  t.same(errs.map((e) => [e.code, e.message]), [[11, 'm exhausted'], [110, 'm conflict'], [111, 'm invalid']]);
});

t.test('a conflicting request fails naming the address and the pod holding it; nothing changes', async (t) => {
  const conf = netConf();
  const args = (name: string) => ({ CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=db;K8S_POD_NAME=${name}` });
  await call('ADD', { ...conf, ipam: { ...(conf.ipam as object), requested: ['10.244.7.17'] } }, 'first', args('pg-0'));
  const before = readFileSync(storePaths(dir, conf.name as string).state, 'utf8');
  const second = await call('ADD', { ...conf, ipam: { ...(conf.ipam as object), requested: ['10.244.7.17'] } }, 'second', args('pg-1'));
  const gateway = await call('ADD', { ...conf, ipam: { ...(conf.ipam as object), requested: ['10.244.7.1'] } }, 'third', args('pg-2'));
  t.same([second.json.code, second.json.msg, gateway.json.code, readFileSync(storePaths(dir, conf.name as string).state, 'utf8') === before],
    [110, 'requested address 10.244.7.17 is held by pod db/pg-0 (container first)', 111, true]);
});

t.test('ADD result: the address with its prefix and gateway, and the routes; ADD and DEL are idempotent', async (t) => {
  const conf = netConf();
  const first = await call('ADD', conf);
  const again = await call('ADD', conf);
  const old = await call('ADD', { ...conf, cniVersion: '0.3.1' }, 'c2');
  await call('DEL', conf);
  const del2 = await call('DEL', conf);
  t.same({ first: first.json, same: again.json.ips, old: old.json.ips, del2: del2.exitCode, left: stateOf(conf).allocations.map((a) => a.containerId) }, {
    first: {
      cniVersion: '1.0.0',
      ips: [{ address: '10.244.7.2/24', gateway: '10.244.7.1' }],
      routes: [{ dst: '10.244.0.0/16', gw: '10.244.7.1' }, { dst: '0.0.0.0/0', gw: '10.244.7.1' }],
      dns: {},
    },
    same: [{ address: '10.244.7.2/24', gateway: '10.244.7.1' }],
    old: [{ version: '4', address: '10.244.7.3/24', gateway: '10.244.7.1' }],
    del2: 0,
    left: ['c2'],
  });
});

t.test('a borrowed address: alone in its /32, no gateway, its gateway on-link the one route of its family', async (t) => {
  const conf = netConf({ requested: ['10.244.9.17'] });
  const r = await call('ADD', conf, 'c1', { CNI_ARGS: 'K8S_POD_NAMESPACE=db;K8S_POD_NAME=pg-0' });
  const dual = ipamResult(
    parseIpamConf(netConf({ ranges: [[{ subnet: '10.244.7.0/24' }], [{ subnet: '2001:db8:7::/64' }]], routes: [{ dst: '0.0.0.0/0', gw: '10.244.7.1' }, { dst: '::/0', gw: '2001:db8:7::1' }] })),
    [{ address: '10.244.9.17', family: 4, borrowed: true }, { address: '2001:db8:7::5', family: 6 }] as Allocation[],
  );
  t.same({ ips: r.json.ips, routes: r.json.routes, borrowed: stateOf(conf).allocations.map((a) => [a.address, a.pinned, a.borrowed]), dual: [dual.ips, dual.routes] }, {
    ips: [{ address: '10.244.9.17/32' }],
    routes: [{ dst: '10.244.7.1/32' }],
    borrowed: [['10.244.9.17', true, true]],
    dual: [
      [{ address: '10.244.9.17/32' }, { address: '2001:db8:7::5/64', gateway: '2001:db8:7::1' }],
      [{ dst: '10.244.7.1/32' }, { dst: '::/0', gw: '2001:db8:7::1' }],
    ],
  });
});

t.test('GC frees every allocation not in the runtime\'s valid attachments and records why', async (t) => {
  const conf = { ...netConf(), cniVersion: '1.1.0' };
  for (const id of ['a', 'b', 'c']) await call('ADD', conf, id);
  const gc = await call('GC', { ...conf, 'cni.dev/valid-attachments': [{ containerID: 'b', ifname: 'eth0' }] });
  const old = await call('GC', { ...conf, cniVersion: '1.0.0', 'cni.dev/valid-attachments': [] });
  const bad = await call('GC', { ...conf, 'cni.dev/valid-attachments': [{ containerID: 1 }] });
  const s = stateOf(conf);
  t.same({ code: gc.exitCode, log: gc.log, kept: s.allocations.map((a) => a.containerId), freed: s.lastReconcile?.freed.map((f) => [f.containerId, f.reason]), old: old.json.code, bad: bad.json.code }, {
    code: 0,
    log: "weft-ipam: GC freed 2 addresses not in the runtime's valid attachments",
    kept: ['b'],
    freed: [['a', 'not-attached'], ['c', 'not-attached']],
    old: 1,
    bad: 7,
  });
});

t.test('a full range whose holders\' network namespaces are gone: ADD frees them under the lock and succeeds', async (t) => {
  const conf = netConf({ ranges: [[{ subnet: '192.0.2.0/29' }]] });
  const p = storePaths(dir, conf.name as string);
  const state = emptyState();
  // .2-.6 held: two by live namespaces, three by namespaces a crash took away.
  state.allocations = [2, 3, 4, 5, 6].map((n): Allocation => ({
    address: `192.0.2.${n}`, family: 4, containerId: `x${n}`, ifname: 'eth0', netns: `/var/run/netns/x${n}`, since: new Date().toISOString(), pinned: false,
  }));
  writeState(p.state, state);
  const live = new Set(['/var/run/netns/x2', '/var/run/netns/x5']);
  const r = ipamAdd(parseIpamConf(conf), { containerId: 'new', ifname: 'eth0', netns: '/var/run/netns/new' }, new Date(), (path) => live.has(path));
  const after = readState(p.state);
  t.same({ freed: r.freed, ip: (r.result.ips as Array<{ address: string }>)[0]!.address, held: after.allocations.map((a) => a.containerId).sort(), why: after.lastReconcile?.freed.map((f) => f.reason) }, {
    freed: 3,
    ip: '192.0.2.3/29',
    held: ['new', 'x2', 'x5'],
    why: ['netns-gone', 'netns-gone', 'netns-gone'],
  });
});

t.test('a full range of live holders stays full: code 11 naming the range', async (t) => {
  const conf = netConf({ ranges: [[{ subnet: '192.0.2.0/30' }]] });
  await call('ADD', conf, 'only');
  // The first holder's netns path does not exist here either: only allocations with no netns recorded are safe from the reclaim.
  const p = storePaths(dir, conf.name as string);
  const s = readState(p.state);
  writeState(p.state, { ...s, allocations: s.allocations.map((a) => ({ ...a, netns: '' })) });
  const r = await call('ADD', conf, 'second');
  t.same([r.json.code, r.json.msg], [11, 'no free address in 192.0.2.0/30: it has 1 usable address and 1 is held']);
});
