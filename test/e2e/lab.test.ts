// The lab itself: namespaces, underlay, etcd, CNI wiring, teardown (also after
// a crash). The wiring tests run without agents (startAgents: false, subnet.env
// and routes written by hand) so they test the lab, not the agent.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { runCommand } from '../../src/lab/command.js';
import { Lab, agentEntry } from '../../src/lab/lab.js';
import type { PingMatrix } from '../../src/lab/ping.js';
import { isAlive } from '../../src/core/process.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import { nodeSubnet, nodeUnderlayIP, readLabState } from '../../src/lab/state.js';
import { waitUntil } from './support/lab-fixture.js';

const root = join(fileURLToPath(import.meta.url), '..', '..', '..');
const cli = agentEntry();

/** Everything of lab `name` still on the machine: namespaces, state dir, temp dirs. */
async function leftovers(name: string): Promise<string[]> {
  const found = (await readdir('/run/netns').catch(() => [] as string[])).filter((ns) => ns.startsWith(`wl-${name}-`));
  if (existsSync(`/run/weft-lab/${name}`)) found.push(`/run/weft-lab/${name}`);
  found.push(...(await readdir(tmpdir())).filter((d) => d.startsWith(`weft-lab-${name}-`)));
  return found;
}

function weft(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCommand([process.execPath, cli, ...args], { check: false, timeoutMs: 180_000 });
}

async function fresh(t: Test, name: string): Promise<void> {
  await Lab.destroy(name);
  t.teardown(() => Lab.destroy(name));
}

t.test('wiring without agents: underlay, etcd, CNI pods in the node subnet, ping matrix, teardown', async (t) => {
  await fresh(t, 't1');
  const started = Date.now();
  const lab = await Lab.up({ name: 't1', nodes: 2, startAgents: false });
  t.comment(`lab up (2 nodes, no agents) in ${Date.now() - started} ms`);
  const etcdPid = (await readLabState('t1'))?.etcdPid;
  t.ok(etcdPid && isAlive(etcdPid), 'etcd runs');
  t.same(lab.nodes.map((n) => [n.ns, n.underlayIP]), [
    ['wl-t1-n1', '192.0.2.11'],
    ['wl-t1-n2', '192.0.2.12'],
  ]);
  await t.rejects(Lab.up({ name: 't1', nodes: 1, startAgents: false }), /already up/, 'a second lab of the same name is refused');

  // Nothing of the lab is in the root namespace.
  const rootLinks = await runCommand(['ip', '-br', 'link']);
  t.notMatch(rootLinks.stdout, /cni0|\bbr0\b/, 'no lab link in the root namespace');

  const node1Routes = await lab.exec('n1', ['ip', '-4', 'route']);
  t.match(node1Routes.stdout, /^default via 192\.0\.2\.1 dev eth0/m, 'nodes route through the underlay gateway');
  t.equal((await lab.exec('n1', ['cat', '/proc/sys/net/ipv4/ip_forward'])).stdout.trim(), '1');

  t.same(JSON.parse((await lab.etcdGet('/weft/network/config')) ?? 'null'), { Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } });
  await lab.etcdPut('/t1/a', 'x y\n');
  await lab.etcdPut('/t1/b', '{"k":1}');
  t.equal(await lab.etcdGet('/t1/a'), 'x y\n', 'values round-trip byte for byte');
  t.same([...(await lab.etcdList('/t1/')).keys()], ['/t1/a', '/t1/b']);
  t.equal(await lab.etcdDel('/t1/', { prefix: true }), 2);
  t.equal(await lab.etcdGet('/t1/a'), undefined);

  await lab.writeSubnetEnv('n1', '10.244.1.0/24', { mtu: 1400 });
  await lab.writeSubnetEnv('n2', '10.244.2.0/24');
  const p11 = await lab.addPod('n1');
  const p12 = await lab.addPod('n1');
  const p21 = await lab.addPod('n2');
  t.same(lab.pods.map((p) => p.ns), ['wl-t1-n1-p1', 'wl-t1-n1-p2', 'wl-t1-n2-p1']);
  for (const [pod, net] of [[p11, '10.244.1.'], [p12, '10.244.1.'], [p21, '10.244.2.']] as const) {
    t.ok(pod.ip.startsWith(net) && !pod.ip.endsWith('.1') && !pod.ip.endsWith('.0'), `${pod.name} ${pod.ip} is a host address of ${net}0/24`);
  }
  t.not(p11.ip, p12.ip, 'weft-ipam hands out distinct addresses');
  const podLink = await lab.exec(p11, ['ip', '-o', 'link', 'show', 'eth0']);
  t.match(podLink.stdout, /mtu 1400/, 'pod MTU from FLANNEL_MTU');
  t.match((await lab.exec(p11, ['ip', '-4', 'route'])).stdout, /^default via 10\.244\.1\.1 dev eth0/m, 'pod gateway is the FLANNEL_SUBNET address');
  t.match((await lab.exec('n1', ['ip', '-4', '-o', 'addr', 'show', 'cni0'])).stdout, /10\.244\.1\.1\/24/, 'cni0 holds the gateway');
  t.match(readFileSync(join(lab.dir, 'n1', 'weft-ipam', 'weft', 'state.json'), 'utf8'), `"address": "${p11.ip}"`, 'weft-ipam state lives in the lab dir');
  t.notOk(existsSync('/var/lib/cni/networks/weft') || existsSync('/var/lib/cni/weft-ipam/weft'), 'nothing in /var/lib/cni');

  const isolated = await lab.pingMatrix();
  t.notOk(isolated.ok, 'without routes between nodes the matrix fails');
  t.same(
    isolated.rows.filter((r) => r.ok).map((r) => `${r.from}>${r.to}`),
    ['n1-p1>n1-p2', 'n1-p2>n1-p1'],
    'only pods on the same node reach each other',
  );

  await lab.exec('n1', ['ip', 'route', 'add', '10.244.2.0/24', 'via', '192.0.2.12']);
  await lab.exec('n2', ['ip', 'route', 'add', '10.244.1.0/24', 'via', '192.0.2.11']);
  const full = await lab.pingMatrix();
  t.ok(full.ok, 'with host-gw routes written by hand every pair answers');
  t.equal(full.rows.length, 6);

  // The CLI against a lab another process built.
  const ping = await weft(['lab', 'ping', '--name', 't1']);
  t.equal(ping.code, 0, 'weft lab ping exits 0');
  t.match(ping.stdout, /6\/6 pod pairs reachable/);
  const exec = await weft(['lab', 'exec', '--name', 't1', 'n2', '--', 'ip', '-4', '-o', 'addr', 'show', 'eth0']);
  t.match(exec.stdout, /192\.0\.2\.12\/24/);
  const status = await weft(['lab', 'status', '--name', 't1']);
  t.match(status.stdout, /wl-t1-n2-p1\s+n2\s+10\.244\.2\./);

  const ipamFile = join(lab.dir, 'n1', 'ipam', 'weft', p12.ip);
  await lab.removePod(p12);
  t.notOk(existsSync('/run/netns/wl-t1-n1-p2'), 'removed pod namespace is gone');
  t.notOk(existsSync(ipamFile), 'CNI DEL released the address');

  await lab.exec('n2', ['ip', 'route', 'del', '10.244.1.0/24']);
  const broken = await weft(['lab', 'ping', '--name', 't1']);
  t.equal(broken.code, 1, 'weft lab ping exits 1 when a pair fails');

  await lab.down();
  t.same(await leftovers('t1'), [], 'down leaves no namespace, state or temp dir');
  t.notOk(isAlive(etcdPid!), 'etcd is stopped');
});

t.test('down after a crash removes processes, namespaces and dirs', async (t) => {
  await fresh(t, 't2');
  // A separate process builds the lab, starts a long-lived process in a node, then dies without cleaning up.
  const script = `
    const { Lab } = await import(${JSON.stringify(join(root, 'dist/src/lab/lab.js'))});
    const { spawnDetached } = await import(${JSON.stringify(join(root, 'dist/src/core/process.js'))});
    const lab = await Lab.up({ name: 't2', nodes: 2, startAgents: false });
    await lab.writeSubnetEnv('n1', '10.244.1.0/24');
    await lab.addPod('n1');
    const sleeper = spawnDetached(['ip', 'netns', 'exec', 'wl-t2-n1', 'sleep', '600'], lab.dir + '/sleep.log');
    console.log(JSON.stringify({ sleeper }));
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`lab builder exited early (${code})`)));
  });
  const { sleeper } = JSON.parse(line) as { sleeper: number };
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));

  const state = await readLabState('t2');
  t.ok(state, 'the state file survives the crash');
  t.ok(isAlive(state!.etcdPid!), 'etcd survives the crash');
  t.ok(isAlive(sleeper), 'the process inside the node survives the crash');
  t.ok((await leftovers('t2')).length > 0);

  const down = await weft(['lab', 'down', '--name', 't2']);
  t.equal(down.code, 0, down.stderr);
  t.same(await leftovers('t2'), [], 'nothing of the lab is left');
  t.notOk(isAlive(state!.etcdPid!), 'etcd is gone');
  t.notOk(isAlive(sleeper), 'the process inside the node is gone');
  t.equal((await weft(['lab', 'down', '--name', 't2'])).code, 0, 'a second down is a no-op');
});

t.test('down with the state file lost still finds the lab by its names', async (t) => {
  await fresh(t, 't6');
  const lab = await Lab.up({ name: 't6', nodes: 1, startAgents: false });
  const etcdPid = (await readLabState('t6'))!.etcdPid!;
  await rm('/run/weft-lab/t6', { recursive: true, force: true });
  await Lab.destroy('t6');
  t.same(await leftovers('t6'), [], 'namespaces and temp dir found by name');
  t.notOk(isAlive(etcdPid), 'etcd found as a process inside the underlay namespace');
  t.notOk(existsSync(lab.dir));
});

t.test('routed topology: two segments through the underlay router, outside hosts, added nodes', async (t) => {
  await fresh(t, 't3');
  const lab = await Lab.up({ name: 't3', nodes: 3, topology: 'routed', startAgents: false });
  t.same(lab.nodes.map((n) => n.underlayIP), ['192.0.2.11', '198.51.100.12', '192.0.2.13']);
  const ping = async (from: string, ip: string): Promise<boolean> =>
    (await lab.exec(from, ['ping', '-c', '1', '-W', '2', ip], { check: false })).code === 0;
  t.ok(await ping('n1', '192.0.2.13'), 'same segment');
  t.ok(await ping('n1', '198.51.100.12'), 'across segments, routed');
  const route = await lab.exec('n1', ['ip', '-4', 'route', 'get', '198.51.100.12']);
  t.match(route.stdout, /via 192\.0\.2\.1 dev eth0/, 'the other segment is not on-link');
  t.match((await lab.exec('n2', ['ip', '-4', 'route', 'get', '192.0.2.1'])).stdout, /via 198\.51\.100\.1/, 'etcd is reached through the router from segment 1');
  t.equal((await lab.exec('ul', ['etcdctl', `--endpoints=${lab.etcdEndpoint}`, 'endpoint', 'health'], { check: false })).code, 0);

  const outside = await lab.addUnderlayHost('out', { segment: 2 });
  t.equal(outside.ip, '203.0.113.100');
  t.ok(await ping('n2', outside.ip), 'an outside host is reachable through the underlay router');
  const attacker = await lab.addUnderlayHost('evil');
  t.equal(attacker.ip, '192.0.2.100');
  t.ok(await ping('evil', '192.0.2.11'), 'an extra host on segment 0 sits next to the nodes');

  const n4 = await lab.addNode();
  t.same([n4.name, n4.underlayIP, n4.agentPid], ['n4', '198.51.100.14', undefined], 'without agents a new node only gets wired');
  t.ok(await ping('n4', '198.51.100.12'));

  await lab.down();
  t.same(await leftovers('t3'), []);
});

t.test('weft lab up/down with real agents leaves nothing behind', async (t) => {
  await fresh(t, 't4');
  const up = await weft(['lab', 'up', '--name', 't4', '--nodes', '2', '--pods', '1']);
  t.equal(up.code, 0, up.stderr.trim());
  t.comment(up.stdout.trim().split('\n')[0] ?? '');
  const state = await readLabState('t4');
  const agents = (state?.nodes ?? []).map((n) => n.agentPid);
  t.equal(agents.length, 2);
  t.ok(agents.every((p) => p !== undefined && isAlive(p)), 'an agent runs per node');
  t.ok(state?.nodes.every((n) => n.subnet?.startsWith('10.244.')), 'each node has a subnet from its subnet.env');
  t.comment(`agent start to /readyz: ${state?.nodes.map((n) => `${n.name} ${n.agentReadyMs} ms`).join(', ')}`);
  t.equal(state?.pods.length, 2);

  const down = await weft(['lab', 'down', '--name', 't4']);
  t.equal(down.code, 0, down.stderr);
  t.same(await leftovers('t4'), []);
  t.ok(agents.every((p) => !isAlive(p!)), 'agents are stopped');
  t.notOk(isAlive(state!.etcdPid!), 'etcd is stopped');
});

/** "family: failed pairs" for every matrix: [] when every pair answered in every family. */
function failures(matrices: readonly PingMatrix[]): string[] {
  return matrices.flatMap((m) => m.rows.filter((r) => !r.ok).map((r) => `IPv${m.family} ${r.from}>${r.to}`));
}

t.test('dual-stack underlay without agents: an IPv6 /64 per segment, routed between segments, pods with both addresses', async (t) => {
  await fresh(t, 't7');
  const lab = await Lab.up({ name: 't7', nodes: 3, topology: 'routed', families: [4, 6], startAgents: false });
  t.same(lab.nodes.map((n) => [n.underlayIP, n.underlayIPv6]), [
    ['192.0.2.11', '2001:db8::11'],
    ['198.51.100.12', '2001:db8:0:1::12'],
    ['192.0.2.13', '2001:db8::13'],
  ]);
  t.match((await lab.exec('n2', ['ip', '-6', 'route', 'show', 'default'])).stdout, /^default via 2001:db8:0:1::1 dev eth0/m, 'an IPv6 default route through the segment gateway');
  const forwarding = await Promise.all(['ul', 'n1'].map(async (ns) => (await lab.exec(ns, ['cat', '/proc/sys/net/ipv6/conf/all/forwarding'])).stdout.trim()));
  t.same(forwarding, ['1', '1'], 'the router and the nodes forward IPv6');
  const ping6 = async (from: string, ip: string): Promise<boolean> => (await lab.exec(from, ['ping', '-c', '1', '-W', '2', ip], { check: false })).code === 0;
  t.same(await Promise.all([ping6('n1', '2001:db8::13'), ping6('n1', '2001:db8:0:1::12'), ping6('n2', '2001:db8::1')]), [true, true, true], 'same segment, across segments, and the gateway answer over IPv6');
  t.match((await lab.exec('n1', ['ip', '-6', 'route', 'get', '2001:db8:0:1::12'])).stdout, /via 2001:db8::1 dev eth0/, 'the other segment is reached through the router');
  t.equal(lab.etcdEndpoint, 'http://192.0.2.1:2379', 'a dual-stack lab keeps etcd on IPv4');

  for (const n of lab.nodes) {
    await lab.writeSubnetEnv(n, `10.244.${n.index}.0/24`, { ipv6Subnet: `2001:db8:1000:${n.index}::/64` });
    await lab.addPod(n);
  }
  t.same(
    lab.pods.filter((p) => !Cidr.parse(nodeSubnet(lab.node(p.node), 6)!).contains(IP.parse(p.ipv6 ?? '::'))).map((p) => p.name),
    [],
    'every pod has an IPv6 address in its node\'s IPv6 subnet',
  );
  // The underlay router learns every pod subnet (as a routed fabric would), so pods on both segments reach each other.
  await lab.exec('ul', ['ip', '-batch', '-'], {
    input: lab.nodes.flatMap((n) => lab.families.map((f) => `route add ${nodeSubnet(n, f)} via ${nodeUnderlayIP(n, f)}`)).join('\n') + '\n',
  });
  const matrices = await lab.pingMatrices();
  t.same(matrices.map((m) => [m.family, m.rows.length]), [[4, 6], [6, 6]], 'one matrix per family, every ordered pair');
  t.same(failures(matrices), [], 'every pair answers in both families');

  const json = await weft(['lab', 'ping', '--name', 't7', '--json']);
  t.equal(json.code, 0, 'weft lab ping --json exits 0');
  t.same((JSON.parse(json.stdout) as PingMatrix[]).map((m) => [m.family, m.ok]), [[4, true], [6, true]], 'the JSON names each matrix\'s family');
  const text = await weft(['lab', 'ping', '--name', 't7']);
  t.match(text.stdout, /6\/6 pod pairs reachable over IPv4\n\nIPv6 .*\n(.*\n){3}6\/6 pod pairs reachable over IPv6\n$/, 'the text has a matrix per family');
  const status = await weft(['lab', 'status', '--name', 't7']);
  t.match(status.stdout, /routed topology, dual,[^]*wl-t7-n2\s+198\.51\.100\.12\s+2001:db8:0:1::12\s+10\.244\.2\.0\/24\s+2001:db8:1000:2::\/64/, 'weft lab status shows both families');

  await lab.down();
  t.same(await leftovers('t7'), []);
});

/** `weft lab up --name NAME ARGS` with agents; the lab, or undefined (and a failed assertion) when it did not come up. */
async function labUp(t: Test, name: string, args: string[]): Promise<Lab | undefined> {
  await fresh(t, name);
  const up = await weft(['lab', 'up', '--name', name, ...args]);
  t.equal(up.code, 0, `weft lab up ${args.join(' ')}${up.code ? `: ${up.stderr.trim()}` : ''}`);
  return up.code === 0 ? Lab.attach(name) : undefined;
}

/**
 * Ready agents may still be learning of each other: waits for a full matrix
 * in every family, then runs `weft lab ping --json`: its exit code and each
 * matrix's family and verdict.
 */
async function cliPing(t: Test, lab: Lab): Promise<[number, Array<[number, boolean]>]> {
  const converged = await waitUntil(async () => failures(await lab.pingMatrices()).length === 0, { timeoutMs: 30_000, intervalMs: 500 });
  t.comment(`every pair answers ${converged.ms} ms after lab up`);
  const ping = await weft(['lab', 'ping', '--name', lab.name, '--json']);
  return [ping.code, (JSON.parse(ping.stdout || '[]') as PingMatrix[]).map((m) => [m.family, m.ok])];
}

t.test('weft lab up --ip-family ipv6: an IPv6-only underlay, etcd and pods, every pair answers over IPv6', async (t) => {
  const lab = await labUp(t, 't9', ['--nodes', '2', '--pods', '1', '--ip-family', 'ipv6']);
  if (!lab) return;
  t.same(lab.nodes.map((n) => n.underlayIP), ['2001:db8::11', '2001:db8::12']);
  t.equal(lab.etcdEndpoint, 'http://[2001:db8::1]:2379', 'etcd listens on the IPv6 gateway');
  t.equal((await lab.exec('n1', ['ip', '-4', '-o', 'addr', 'show', 'eth0'])).stdout, '', 'no IPv4 on the underlay');
  t.same(lab.pods.filter((p) => !p.ip.startsWith('2001:db8:1000:')).map((p) => p.name), [], 'pods have IPv6 addresses only');
  t.same(await cliPing(t, lab), [0, [[6, true]]], 'weft lab ping: one matrix, IPv6, every pair answers');
});

t.test('weft lab up --ip-family dual with agents: every pod pair answers in both families', async (t) => {
  const lab = await labUp(t, 't8', ['--nodes', '3', '--pods', '1', '--ip-family', 'dual']);
  if (!lab) return;
  const v6net = Cidr.parse('2001:db8:1000::/56');
  t.same(lab.nodes.filter((n) => !(n.ipv6Subnet && v6net.covers(Cidr.parse(n.ipv6Subnet)) && n.ipv6Subnet.endsWith('/64'))).map((n) => n.name), [], 'every node leased a /64 of the IPv6 network');
  t.same(await cliPing(t, lab), [0, [[4, true], [6, true]]], 'weft lab ping: every pod pair answers over IPv4 and over IPv6');
});

t.test('without root the lab says so in one line', async (t) => {
  // env -u: tap's process hooks (NODE_OPTIONS, re-added on every spawn) cannot write .tap/ as nobody.
  const argv = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'env', '-u', 'NODE_OPTIONS', process.execPath, cli, 'lab', 'up', '--name', 't5'];
  const r = await runCommand(argv, { check: false });
  t.equal(r.code, 1);
  t.equal(r.stderr.trim().split('\n').length, 1);
  t.match(r.stderr, /needs root.*rerun as root/);
  t.same(await leftovers('t5'), []);
});
