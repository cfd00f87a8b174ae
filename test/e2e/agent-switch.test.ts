// Live backend switch, end to end: three real agents (dist/ build) in node
// namespaces on one bridge, a real etcd, the backend changed only through
// <prefix>/config. host-gw -> vxlan -> host-gw, with connectivity between
// node-side pod addresses after each step, nothing of the old backend left,
// the nftables table matching the running backend, an invalid config and a
// Network change refused while the backend keeps running, and ping loss
// during each switch measured and asserted to be zero. Needs root.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { agentEntry } from '../../src/lab/lab.js';
import { PingFlow } from './support/watched-process.js';
import { EtcdServer, removeEtcdLeftovers } from '../../src/lab/etcd.js';

const PREFIX = 'wag-';
const UL = 'wag-ul';
const NODES = [1, 2, 3].map((i) => ({ i, ns: `wag-n${i}`, ip: `192.0.2.${i}` }));
const ETCD_IP = '192.0.2.254';
const ETCD_PREFIX = '/wag/network';
const WAIT_MS = 60_000; // generous: the machine is shared
const PING_INTERVAL_S = 0.01;

const HOST_GW = JSON.stringify({ Network: '10.5.0.0/16', Backend: { Type: 'host-gw' } });
const VXLAN = JSON.stringify({ Network: '10.5.0.0/16', Backend: { Type: 'vxlan' } });

function sh(cmd: string, args: string[], opts: { check?: boolean; input?: string } = {}): { code: number; out: string; err: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input, env: cleanEnv() });
  if ((opts.check ?? true) && r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error}`);
  return { code: r.status ?? -1, out: r.stdout ?? '', err: r.stderr ?? '' };
}
const inNs = (ns: string, argv: string[], opts: { check?: boolean } = {}) => sh('ip', ['netns', 'exec', ns, ...argv], opts);
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_') && !k.startsWith('ETCDCTL_')));
}

function ourNamespaces(): string[] {
  return sh('ip', ['netns', 'list']).out.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(PREFIX));
}

/** Kills what runs in our namespaces (agents, etcd, ping from an earlier crash), then removes them. */
function cleanup(): void {
  for (const ns of ourNamespaces()) {
    for (const pid of sh('ip', ['netns', 'pids', ns], { check: false }).out.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    sh('ip', ['netns', 'del', ns], { check: false });
  }
  for (const name of readdirSync(tmpdir())) {
    if (name.startsWith('wag-agent-')) rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
}

function etcdctl(...args: string[]): string {
  return inNs(UL, ['etcdctl', `--endpoints=http://${ETCD_IP}:2379`, '--dial-timeout=2s', '--command-timeout=5s', ...args]).out;
}
const putConfig = (text: string): void => void etcdctl('put', `${ETCD_PREFIX}/config`, text);

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = WAIT_MS): Promise<number> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
  return Date.now() - start;
}

interface RunningNode {
  i: number;
  ns: string;
  ip: string;
  dir: string;
  agent?: ChildProcess;
  /** This node's pod gateway address (FLANNEL_SUBNET), put on a dummy device as a stand-in pod. */
  podIP?: string;
}

function readEnv(node: RunningNode): Record<string, string> {
  const text = readFileSync(join(node.dir, 'subnet.env'), 'utf8');
  return Object.fromEntries(text.trim().split('\n').map((l) => l.split('=') as [string, string]));
}
function status(node: RunningNode): { backend: string; ready: boolean; subnet: string } | undefined {
  try {
    return JSON.parse(readFileSync(join(node.dir, 'run', 'status.json'), 'utf8'));
  } catch {
    return undefined;
  }
}
const log = (node: RunningNode): string => {
  try {
    return readFileSync(join(node.dir, 'agent.log'), 'utf8');
  } catch {
    return '';
  }
};
const weftRoutes = (node: RunningNode): { dst: string; gateway?: string; dev: string }[] =>
  JSON.parse(sh('ip', ['-n', node.ns, '-json', 'route', 'show', 'proto', '147']).out || '[]');
const weftLinks = (node: RunningNode): { ifname: string; mtu: number }[] =>
  (JSON.parse(sh('ip', ['-n', node.ns, '-json', 'link', 'show']).out || '[]') as { ifname: string; mtu: number }[]).filter((l) => l.ifname.startsWith('weft'));
const nftTable = (node: RunningNode): string | undefined => {
  const r = inNs(node.ns, ['nft', 'list', 'table', 'inet', 'weft'], { check: false });
  return r.code === 0 ? r.out : undefined;
};

function startAgent(node: RunningNode, extra: string[] = []): void {
  mkdirSync(join(node.dir, 'run'), { recursive: true });
  const fd = openSync(join(node.dir, 'agent.log'), 'a');
  try {
    node.agent = spawn('ip', [
      'netns', 'exec', node.ns, process.execPath, agentEntry(), 'agent',
      '--etcd-endpoints', `http://${ETCD_IP}:2379`,
      '--etcd-prefix', ETCD_PREFIX,
      '--iface', 'eth0',
      '--node-name', node.ns,
      '--subnet-file', join(node.dir, 'subnet.env'),
      '--run-dir', join(node.dir, 'run'),
      '--healthz-addr', '127.0.0.1:10270',
      '--resync', '2s',
      ...extra,
    ], { stdio: ['ignore', fd, fd], env: cleanEnv() });
  } finally {
    closeSync(fd);
  }
}

async function stopAgent(node: RunningNode): Promise<void> {
  const child = node.agent;
  node.agent = undefined;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  if (await Promise.race([exited.then(() => true), sleep(15_000).then(() => false)])) return;
  child.kill('SIGKILL');
  await exited;
}

async function ping(from: RunningNode, to: RunningNode): Promise<boolean> {
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', from.ns, 'ping', '-n', '-q', '-c', '1', '-W', '1', '-I', from.podIP!, to.podIP!], { stdio: 'ignore' });
    p.on('exit', (code) => resolve(code === 0));
    p.on('error', () => resolve(false));
  });
}

/** Every ordered pair of nodes, pod address to pod address; the pairs that fail. */
async function matrixFailures(nodes: RunningNode[]): Promise<string[]> {
  const pairs = nodes.flatMap((a) => nodes.filter((b) => b !== a).map((b) => [a, b] as const));
  const results = await Promise.all(pairs.map(async ([a, b]) => ((await ping(a, b)) ? undefined : `n${a.i}->n${b.i}`)));
  return results.filter((r): r is string => r !== undefined);
}

function leaseValues(): { key: string; value: { PublicIP: string; BackendType: string; BackendData: unknown } }[] {
  const lines = etcdctl('get', '--prefix', `${ETCD_PREFIX}/subnets/`).trim().split('\n').filter(Boolean);
  const rows = [];
  for (let k = 0; k + 1 < lines.length; k += 2) rows.push({ key: lines[k]!, value: JSON.parse(lines[k + 1]!) });
  return rows;
}

if (process.getuid?.() !== 0) {
  t.fail('this test needs root (network namespaces); run it as root');
} else if (!existsSync(agentEntry())) {
  t.fail(`weft is not built (${agentEntry()} is missing); run "npm run build" first`);
} else {
  cleanup();
  await removeEtcdLeftovers('wag-etcd-');
  const dir = mkdtempSync(join(tmpdir(), 'wag-agent-'));
  const nodes: RunningNode[] = NODES.map((n) => ({ ...n, dir: join(dir, `n${n.i}`) }));
  let etcd: EtcdServer | undefined;
  t.teardown(async () => {
    await Promise.all(nodes.map(stopAgent));
    await etcd?.cleanup();
    cleanup();
  });

  // Underlay: one bridge in wag-ul; each node's eth0 is a veth into it.
  sh('ip', ['netns', 'add', UL]);
  sh('ip', ['-n', UL, 'link', 'set', 'lo', 'up']);
  sh('ip', ['-n', UL, 'link', 'add', 'br0', 'type', 'bridge']);
  sh('ip', ['-n', UL, 'addr', 'add', `${ETCD_IP}/24`, 'dev', 'br0']);
  sh('ip', ['-n', UL, 'link', 'set', 'br0', 'up']);
  for (const n of nodes) {
    mkdirSync(n.dir, { recursive: true });
    sh('ip', ['netns', 'add', n.ns]);
    sh('ip', ['-n', n.ns, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', UL, 'link', 'add', `v${n.i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n.ns]);
    sh('ip', ['-n', UL, 'link', 'set', `v${n.i}`, 'master', 'br0', 'up']);
    sh('ip', ['-n', n.ns, 'addr', 'add', `${n.ip}/24`, 'dev', 'eth0']);
    sh('ip', ['-n', n.ns, 'link', 'set', 'eth0', 'up']);
  }
  etcd = await EtcdServer.start({ netns: UL, host: ETCD_IP, tag: 'wag-etcd-' });
  putConfig(HOST_GW);

  const [n1, n2, n3] = nodes as [RunningNode, RunningNode, RunningNode];

  t.test('host-gw: three agents, routes via eth0, no device, nft table only with --ip-masq', async (t) => {
    startAgent(n1, ['--ip-masq']);
    startAgent(n2);
    startAgent(n3);
    for (const n of nodes) {
      await waitFor(`agent on ${n.ns} ready`, () => status(n)?.ready === true);
      const env = readEnv(n);
      n.podIP = env.FLANNEL_SUBNET!.split('/')[0];
      // A veth pair with both ends up (carrier on), not dummy: the kernel may lack the dummy module.
      sh('ip', ['-n', n.ns, 'link', 'add', 'pods', 'type', 'veth', 'peer', 'name', 'pods-peer']);
      sh('ip', ['-n', n.ns, 'addr', 'add', env.FLANNEL_SUBNET!, 'dev', 'pods']);
      sh('ip', ['-n', n.ns, 'link', 'set', 'pods-peer', 'up']);
      sh('ip', ['-n', n.ns, 'link', 'set', 'pods', 'up']);
      t.equal(env.FLANNEL_MTU, '1500', `${n.ns}: host-gw pods get the underlay MTU`);
    }
    t.equal(readEnv(n1).FLANNEL_IPMASQ, 'true');
    t.equal(readEnv(n2).FLANNEL_IPMASQ, 'false');
    await waitFor('every pair of pod addresses to answer', async () => (await matrixFailures(nodes)).length === 0);
    for (const n of nodes) {
      await waitFor(`${n.ns}: two routes via eth0`, () => weftRoutes(n).filter((r) => r.dev === 'eth0').length === 2);
      t.same(weftLinks(n), [], `${n.ns}: no weft device`);
    }
    const table1 = nftTable(n1);
    t.match(table1, /masquerade/, 'n1 (--ip-masq) masquerades');
    t.match(table1, /chain forward/);
    t.notMatch(table1, /udp dport/, 'host-gw has no tunnel port to lock');
    t.equal(nftTable(n2), undefined, 'n2 (no --ip-masq, host-gw) has no table');
    t.equal(nftTable(n3), undefined);
  });

  /**
   * Changes the config with three fast pings running (n1->n2, n2->n3, n3->n1,
   * both directions of every pair) from before the put until the old backend
   * is gone everywhere, and reports what they lost.
   */
  const switchTo = async (t: Test, text: string, backend: string): Promise<void> => {
    const removedLine = /backend removed: every peer has switched/g;
    const drainsBefore = nodes.map((n) => (log(n).match(removedLine) ?? []).length);
    const probes = nodes.map((a, k) => {
      const b = nodes[(k + 1) % nodes.length]!;
      return { name: `n${a.i}->n${b.i}`, probe: PingFlow.start(a.ns, b.podIP!, { intervalS: PING_INTERVAL_S, source: a.podIP! }) };
    });
    await sleep(500); // a baseline before the change
    const put = Date.now();
    putConfig(text);
    const allSwitched = await waitFor(`every agent on ${backend}`, () => nodes.every((n) => status(n)?.backend === backend));
    await waitFor('every pair of pod addresses to answer again', async () => (await matrixFailures(nodes)).length === 0);
    const connected = Date.now() - put;
    const drained = await waitFor('every agent to remove the old backend', () =>
      nodes.every((n, k) => (log(n).match(removedLine) ?? []).length === drainsBefore[k]! + 1));
    await sleep(500); // past the removal of the old devices
    const losses = await Promise.all(probes.map(async (p) => ({ name: p.name, ...(await p.probe.stop()) })));
    const lost = losses.map((l) => `${l.name} ${l.lost.length}/${l.transmitted} (~${Math.round(l.lost.length * PING_INTERVAL_S * 1000)} ms)`).join(', ');
    t.comment(`switch to ${backend}: every agent on ${backend} ${allSwitched} ms after the config put; full matrix checked ${connected} ms after it; ` +
      `old backend removed everywhere ${drained} ms later`);
    t.comment(`switch to ${backend}: ping every ${PING_INTERVAL_S * 1000} ms, lost/sent from before the put until after the old backend's removal: ${lost}`);
    const switchMs = nodes.map((n) => /"ms":(\d+),"msg":"switched to the/.exec([...log(n).matchAll(/"ms":\d+,"msg":"switched to the/g)].at(-1)?.[0] ?? '')?.[1]);
    t.comment(`switch to ${backend}: per-agent time from the config event to the lease republished (ms): ${switchMs.join(', ')}`);
    t.ok(losses.every((l) => l.transmitted > 50), 'the loss probes ran throughout the switch');
    t.same(losses.filter((l) => l.lost.length > 0).map((l) => `${l.name}: seq ${l.lost.join(',')}`), [], `switch to ${backend}: no ping lost on any pair`);
  };

  t.test('switch to vxlan through etcd: device, FDB, routes, nft lock, lease republished', async (t) => {
    const subnetsBefore = nodes.map((n) => status(n)?.subnet);
    await switchTo(t, VXLAN, 'vxlan');
    for (const [k, n] of nodes.entries()) {
      t.equal(status(n)?.subnet, subnetsBefore[k], `${n.ns}: same subnet`);
      const links = weftLinks(n);
      t.same(links.map((l) => l.ifname), ['weft.1'], `${n.ns}: the vxlan device`);
      t.equal(String(links[0]?.mtu), readEnv(n).FLANNEL_MTU, `${n.ns}: FLANNEL_MTU matches the device`);
      t.equal(readEnv(n).FLANNEL_MTU, '1450', 'underlay 1500 minus 50');
      await waitFor(`${n.ns}: two routes on weft.1 and none left via eth0`, () => {
        const routes = weftRoutes(n);
        return routes.length === 2 && routes.every((r) => r.dev === 'weft.1');
      });
      const table = nftTable(n);
      const others = nodes.filter((o) => o !== n).map((o) => o.ip).join(', ');
      t.match(table, new RegExp(`elements = \\{ ${others.replace(/\./g, '\\.')} \\}`), `${n.ns}: VXLAN port open to the two peers only`);
      t.match(table, /udp dport 8472 drop/);
      if (n === n1) t.match(table, /masquerade/, 'n1 keeps its --ip-masq rules');
      else t.notMatch(table, /masquerade|chain forward/, `${n.ns}: no masquerade without --ip-masq`);
    }
    const leases = leaseValues();
    t.equal(leases.length, 3);
    for (const l of leases) {
      t.equal(l.value.BackendType, 'vxlan', `${l.key} republished as vxlan`);
      t.match(l.value.BackendData, { VNI: 1, VtepMAC: /^[0-9a-f:]{17}$/ });
    }
  });

  t.test('the nft table comes back when deleted by hand', async (t) => {
    inNs(n2.ns, ['nft', 'delete', 'table', 'inet', 'weft']);
    const ms = await waitFor('the table to be restored', () => nftTable(n2) !== undefined);
    t.comment(`nft table restored ${ms} ms after deletion (resync 2 s)`);
    t.match(nftTable(n2), /udp dport 8472 drop/);
  });

  t.test('a lease deleted by hand is re-acquired, same subnet, vxlan attributes', async (t) => {
    const mine = leaseValues().find((l) => l.value.PublicIP === n3.ip)!;
    etcdctl('del', mine.key);
    const ms = await waitFor('n3 to re-acquire its lease', () => leaseValues().some((l) => l.key === mine.key && l.value.BackendType === 'vxlan'));
    t.comment(`lease re-acquired ${ms} ms after deletion`);
    t.match(log(n3), /own lease vanished; re-acquiring/);
    t.same(leaseValues().find((l) => l.key === mine.key)?.value, mine.value, 'republished as before');
    await waitFor('full matrix', async () => (await matrixFailures(nodes)).length === 0);
  });

  t.test('an invalid config and a Network change are refused; vxlan keeps running', async (t) => {
    const routesBefore = nodes.map((n) => JSON.stringify(weftRoutes(n)));
    putConfig(JSON.stringify({ Network: '10.5.0.0/16', Backend: { Type: 'vxlan', VNI: 'one' } }));
    for (const n of nodes) {
      await waitFor(`${n.ns} to refuse the invalid config`, () => /new network config in .* refused: net-conf: Backend\.VNI.*backend vxlan keeps running/.test(log(n)));
    }
    putConfig(JSON.stringify({ Network: '10.6.0.0/16', Backend: { Type: 'host-gw' } }));
    for (const n of nodes) {
      await waitFor(`${n.ns} to refuse the Network change`, () => /Network changed from 10\.5\.0\.0\/16 to 10\.6\.0\.0\/16, which needs a cluster rebuild/.test(log(n)));
    }
    const refusals = nodes.map((n) => (log(n).match(/new network config in [^"]* refused/g) ?? []).length);
    t.same(refusals, [2, 2, 2], 'one log line per refused config on every node');
    for (const [k, n] of nodes.entries()) {
      t.equal(status(n)?.backend, 'vxlan', `${n.ns}: still vxlan`);
      t.same(weftLinks(n).map((l) => l.ifname), ['weft.1']);
      t.equal(JSON.stringify(weftRoutes(n)), routesBefore[k], `${n.ns}: routes untouched`);
    }
    t.same(await matrixFailures(nodes), [], 'connectivity unchanged');
    t.ok(leaseValues().every((l) => l.value.BackendType === 'vxlan'), 'leases unchanged');
  });

  t.test('switch back to host-gw, after an etcd restart: nothing of vxlan left', async (t) => {
    // The config watch must come back on its own after etcd does.
    await etcd!.restart();
    await sleep(1000);
    await switchTo(t, HOST_GW, 'host-gw');
    for (const n of nodes) {
      await waitFor(`${n.ns}: the vxlan device gone`, () => weftLinks(n).length === 0);
      await waitFor(`${n.ns}: two routes via eth0, none on weft.1`, () => {
        const routes = weftRoutes(n);
        return routes.length === 2 && routes.every((r) => r.dev === 'eth0');
      });
      t.equal(readEnv(n).FLANNEL_MTU, '1500', `${n.ns}: subnet.env MTU back to the underlay's`);
      t.match(log(n), /pod MTU is now 1500; running pods keep MTU 1450/, `${n.ns}: the MTU change is pointed out`);
    }
    t.notMatch(nftTable(n1), /udp dport|vxlan_peers/, 'n1: the VXLAN lock is gone, masquerade stays');
    t.match(nftTable(n1), /masquerade/);
    t.equal(nftTable(n2), undefined, 'n2: no table needed, none left');
    t.equal(nftTable(n3), undefined);
    t.ok(leaseValues().every((l) => l.value.BackendType === 'host-gw'), 'leases republished as host-gw');
    t.same(nodes.map((n) => (log(n).match(/own lease vanished/g) ?? []).length), [0, 0, 1],
      'four republishes were never taken for a lost lease (n3\'s one is the deletion by hand)');
  });

  t.test('SIGTERM leaves the data plane; --teardown removes it, table included', async (t) => {
    const routes = weftRoutes(n1).length;
    await stopAgent(n1);
    t.equal(weftRoutes(n1).length, routes, 'routes stay after SIGTERM');
    t.match(nftTable(n1), /masquerade/, 'the table stays after SIGTERM');
    const r = inNs(n1.ns, [process.execPath, agentEntry(), 'agent', '--teardown', '--subnet-file', join(n1.dir, 'subnet.env'), '--run-dir', join(n1.dir, 'run')], { check: false });
    t.equal(r.code, 0, `--teardown exits 0 (${r.err.trim().split('\n').at(-1)?.slice(0, 200)})`);
    t.same(weftRoutes(n1), [], 'no weft route left');
    t.same(weftLinks(n1), [], 'no weft device left');
    t.equal(nftTable(n1), undefined, 'no nftables table left');
    t.notOk(existsSync(join(n1.dir, 'subnet.env')), 'subnet.env removed');
  });

  t.test('--net-conf in a ConfigMap-style directory: a symlink swap switches the backend', async (t) => {
    // n1 has left the cluster (torn down above): remove its lease, as its expiry would.
    for (const l of leaseValues()) if (l.value.PublicIP === n1.ip) etcdctl('del', l.key);
    const cm = join(dir, 'configmap');
    mkdirSync(cm);
    const publish = (version: number, text: string): void => {
      // kubelet's atomic writer: a new ..<version> dir, then ..data swapped to it by a rename.
      mkdirSync(join(cm, `..${version}`));
      writeFileSync(join(cm, `..${version}`, 'net-conf.json'), text);
      symlinkSync(`..${version}`, join(cm, '..data_tmp'));
      renameSync(join(cm, '..data_tmp'), join(cm, '..data'));
    };
    publish(1, HOST_GW);
    symlinkSync('..data/net-conf.json', join(cm, 'net-conf.json'));
    const pair = [n2, n3];
    for (const n of pair) {
      await stopAgent(n);
      startAgent(n, ['--net-conf', join(cm, 'net-conf.json')]);
    }
    await waitFor('n2 and n3 on host-gw from the file', () => pair.every((n) => /"msg":"ready"/.test(log(n).split('stopping;').at(-1)!) && status(n)?.backend === 'host-gw'));
    publish(2, VXLAN);
    const ms = await waitFor('n2 and n3 on vxlan', () => pair.every((n) => status(n)?.backend === 'vxlan'));
    t.comment(`ConfigMap swap to vxlan seen and applied by both agents ${ms} ms after the swap`);
    await waitFor('n2 <-> n3 over vxlan', async () => (await matrixFailures(pair)).length === 0);
    await waitFor('host-gw drained on both', () => pair.every((n) => weftRoutes(n).length === 1 && weftRoutes(n).every((r) => r.dev === 'weft.1')));
    publish(3, JSON.stringify({ Network: '10.5.0.0/16', Backend: { Type: 'vxlan', Port: 0 } }));
    for (const n of pair) {
      await waitFor(`${n.ns} to refuse the invalid file`, () => /new network config in [^"]*net-conf\.json refused: net-conf: Backend\.Port/.test(log(n)));
      t.equal(status(n)?.backend, 'vxlan', `${n.ns}: vxlan keeps running`);
    }
    t.same(await matrixFailures(pair), [], 'connectivity unchanged');
  });
}
