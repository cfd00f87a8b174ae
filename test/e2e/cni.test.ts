// The weft CNI plugin through the real CNI protocol: environment variables and
// the network config on stdin, Debian's bridge + host-local plugins as
// delegates (a config naming host-local), pods as network namespaces. Needs root.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const PLUGIN_JS = join(ROOT, 'dist/src/cni/main.js');
const NODE_NS = 'wk8-cni-node';
const PODS = ['wk8-cni-p1', 'wk8-cni-p2'];
const BRIDGE = 'wk8cni0';
const SYSTEM_PLUGINS = '/usr/lib/cni';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: Record<string, any>;
}

function sh(cmd: string, args: string[], check = true): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (check && r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function cleanup(): void {
  for (const ns of [NODE_NS, ...PODS]) spawnSync('ip', ['netns', 'del', ns]);
}

/** A pod namespace's device, address and routes as `ip -json` reports them. */
function podState(ns: string): { addrs: any[]; routes: any[] } {
  return {
    addrs: JSON.parse(sh('ip', ['-n', ns, '-json', 'addr', 'show', 'dev', 'eth0'])),
    routes: JSON.parse(sh('ip', ['-n', ns, '-json', 'route', 'show'])),
  };
}

function staleBuild(): string | undefined {
  if (!existsSync(PLUGIN_JS)) return `${PLUGIN_JS} is missing; run "npm run build" first`;
  const built = statSync(PLUGIN_JS).mtimeMs;
  for (const f of readdirSync(join(ROOT, 'src/cni'))) {
    if (statSync(join(ROOT, 'src/cni', f)).mtimeMs > built) return `dist is older than src/cni/${f}; run "npm run build" first`;
  }
  return undefined;
}

const stale = staleBuild();
if (stale) {
  t.fail(stale);
} else if (process.getuid?.() !== 0) {
  t.fail('this test needs root (network namespaces); run it as root');
} else {
  cleanup();
  const dir = mkdtempSync(join(tmpdir(), 'wk8-cni-'));
  const binDir = join(dir, 'bin');
  const subnetFile = join(dir, 'subnet.env');
  const dataDir = join(dir, 'data');
  const ipamDir = join(dir, 'ipam');
  t.teardown(() => {
    cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  sh('mkdir', ['-p', binDir]);
  // The wrapper a node's CNI bin directory would hold, pointing at the built plugin.
  writeFileSync(join(binDir, 'weft'), `#!/bin/sh\nexec ${process.execPath} ${PLUGIN_JS} "$@"\n`);
  chmodSync(join(binDir, 'weft'), 0o755);
  for (const ns of [NODE_NS, ...PODS]) sh('ip', ['netns', 'add', ns]);
  sh('ip', ['-n', NODE_NS, 'link', 'set', 'lo', 'up']);

  const writeSubnetEnv = (subnet = '10.244.7.1/24', masq = 'true'): void =>
    writeFileSync(subnetFile, `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=${subnet}\nFLANNEL_MTU=1410\nFLANNEL_IPMASQ=${masq}\n`);

  const netConf = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    cniVersion: '1.0.0',
    name: 'wk8-cni',
    type: 'weft',
    subnetFile,
    dataDir,
    // host-local named: a user's config that keeps it gets exactly the old behaviour (weft-ipam has its own e2e, ipam.test.ts).
    delegate: { bridge: BRIDGE, ipam: { type: 'host-local', dataDir: ipamDir } },
    ...extra,
  });

  /** One plugin call, run in the node namespace as a container runtime would. */
  const cni = (
    command: string | undefined,
    opts: { pod?: string; id?: string; stdin?: string; conf?: Record<string, unknown>; env?: Record<string, string | undefined> } = {},
  ): Promise<Run> => {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      CNI_COMMAND: command,
      CNI_CONTAINERID: opts.id ?? opts.pod ?? 'none',
      CNI_NETNS: opts.pod ? `/var/run/netns/${opts.pod}` : undefined,
      CNI_IFNAME: 'eth0',
      CNI_PATH: `${binDir}:${SYSTEM_PLUGINS}`,
      ...opts.env,
    };
    for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
    return new Promise((done, fail) => {
      const child = spawn('ip', ['netns', 'exec', NODE_NS, join(binDir, 'weft')], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
      child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      child.on('error', fail);
      child.on('close', (code) => {
        let json: Record<string, any> = {};
        try {
          json = stdout.trim() ? JSON.parse(stdout) : {};
        } catch {
          json = { unparsable: stdout };
        }
        done({ code: code ?? -1, stdout, stderr, json });
      });
      child.stdin.on('error', () => {});
      child.stdin.end(opts.stdin ?? JSON.stringify(opts.conf ?? netConf()));
    });
  };

  const expectError = (t: Test, r: Run, code: number, msg: RegExp): void => {
    t.not(r.code, 0, 'non-zero exit');
    t.equal(r.json.code, code, `CNI error code ${code} (${r.json.msg})`);
    t.match(r.json.msg, msg);
    t.type(r.json.cniVersion, 'string', 'error carries cniVersion');
  };

  t.test('VERSION', async (t) => {
    const r = await cni('VERSION', { stdin: '{"cniVersion":"0.4.0"}' });
    t.equal(r.code, 0);
    t.equal(r.json.cniVersion, '0.4.0');
    t.same(r.json.supportedVersions, ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
  });

  let addResult: Record<string, any> = {};
  t.test('ADD wires a pod into the node subnet', async (t) => {
    writeSubnetEnv();
    const r = await cni('ADD', { pod: PODS[0] });
    t.equal(r.code, 0, 'ADD exits 0', { stdout: r.stdout, stderr: r.stderr });
    addResult = r.json;
    t.equal(r.json.cniVersion, '1.0.0');
    const ip = r.json.ips?.[0];
    t.match(ip?.address, /^10\.244\.7\.\d+\/24$/, 'address in the node subnet');
    t.equal(ip?.gateway, '10.244.7.1');

    const pod = podState(PODS[0]!);
    t.equal(pod.addrs[0]?.mtu, 1410, 'MTU from FLANNEL_MTU');
    t.ok(pod.addrs[0]?.addr_info.some((a: any) => `${a.local}/${a.prefixlen}` === ip?.address), 'pod holds the address');
    const via = (dst: string) => pod.routes.find((r: any) => r.dst === dst)?.gateway;
    t.equal(via('default'), '10.244.7.1', 'default route via the bridge');
    t.equal(via('10.244.0.0/16'), '10.244.7.1', 'cluster Network via the bridge');

    const br = JSON.parse(sh('ip', ['-n', NODE_NS, '-json', 'addr', 'show', 'dev', BRIDGE]));
    t.ok(br[0].addr_info.some((a: any) => a.local === '10.244.7.1' && a.prefixlen === 24), 'bridge is the gateway');
    const ports = JSON.parse(sh('ip', ['netns', 'exec', NODE_NS, 'bridge', '-d', '-json', 'link', 'show']));
    t.ok(ports.length > 0 && ports.every((p: any) => p.hairpin === true), 'hairpin mode on the pod port');

    const saved = JSON.parse(readFileSync(join(dataDir, `${PODS[0]}-eth0.json`), 'utf8'));
    t.equal(saved.type, 'bridge');
    t.equal(saved.ipMasq, false, 'FLANNEL_IPMASQ=true: the agent masquerades, the bridge does not');
    t.equal(saved.mtu, 1410);
  });

  t.test('a second pod reaches the first through the bridge', async (t) => {
    const r = await cni('ADD', { pod: PODS[1] });
    t.equal(r.code, 0, 'ADD exits 0', { stdout: r.stdout, stderr: r.stderr });
    const target = String(addResult.ips?.[0]?.address).split('/')[0]!;
    const ping = spawnSync('ip', ['netns', 'exec', PODS[1]!, 'ping', '-c', '1', '-W', '5', target], { encoding: 'utf8' });
    t.equal(ping.status, 0, `ping ${target}: ${ping.stdout.split('\n').slice(-3).join(' ')}`);
  });

  t.test('CHECK passes for a wired pod, fails for an unknown one', async (t) => {
    const ok = await cni('CHECK', { pod: PODS[0], conf: netConf({ prevResult: addResult }) });
    t.equal(ok.code, 0, 'CHECK exits 0', { stdout: ok.stdout, stderr: ok.stderr });
    t.equal(ok.stdout.trim(), '');
    const unknown = await cni('CHECK', { pod: PODS[0], id: 'never-added', conf: netConf({ prevResult: addResult }) });
    expectError(t, unknown, 3, /no weft network for container never-added/);
    const old = await cni('CHECK', { pod: PODS[0], conf: netConf({ cniVersion: '0.3.1', prevResult: addResult }) });
    expectError(t, old, 1, /CHECK needs cniVersion 0\.4\.0/);
  });

  t.test('CHECK notices the node subnet changed under the pod', async (t) => {
    writeSubnetEnv('10.244.9.1/24');
    const r = await cni('CHECK', { pod: PODS[0], conf: netConf({ prevResult: addResult }) });
    expectError(t, r, 102, /10\.244\.7\.0\/24.*10\.244\.9\.0\/24/);
    writeSubnetEnv();
  });

  t.test('DEL cleans up, also after subnet.env is gone', async (t) => {
    rmSync(subnetFile);
    const ipamNet = join(ipamDir, 'wk8-cni');
    const leased = () => readdirSync(ipamNet).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
    t.equal(leased().length, 2, 'two addresses leased before DEL');
    for (const pod of PODS) {
      const r = await cni('DEL', { pod, conf: netConf({ prevResult: addResult }) });
      t.equal(r.code, 0, 'DEL exits 0', { stdout: r.stdout, stderr: r.stderr });
      t.notOk(JSON.parse(sh('ip', ['-n', pod, '-json', 'link', 'show'])).some((l: any) => l.ifname === 'eth0'), `${pod} has no eth0`);
      t.notOk(existsSync(join(dataDir, `${pod}-eth0.json`)), 'saved delegate config removed');
    }
    t.same(leased(), [], 'host-local released both addresses');
    const again = await cni('DEL', { pod: PODS[0] });
    t.equal(again.code, 0, 'a repeated DEL succeeds');
    const noNetns = await cni('DEL', { id: 'gone-container' });
    t.equal(noNetns.code, 0, 'DEL without CNI_NETNS and without any record succeeds');
  });

  t.test('error paths answer with CNI error JSON', async (t) => {
    writeSubnetEnv();
    expectError(t, await cni('ADD', { pod: PODS[0], conf: netConf({ subnetFile: join(dir, 'absent.env') }) }), 11, /absent\.env does not exist yet/);
    expectError(t, await cni('ADD', { pod: PODS[0], stdin: '{"cniVersion": "1.0.0", ' }), 6, /not JSON/);
    expectError(t, await cni('FROB', { pod: PODS[0] }), 4, /unknown CNI_COMMAND "FROB"/);
    expectError(t, await cni(undefined, { pod: PODS[0] }), 4, /CNI_COMMAND is not set/);
    expectError(t, await cni('ADD', { id: 'no-netns' }), 4, /missing: CNI_NETNS/);
    expectError(t, await cni('ADD', { pod: PODS[0], env: { CNI_PATH: binDir } }), 100, /"bridge" not found in CNI_PATH/);
    expectError(t, await cni('ADD', { pod: PODS[0], conf: netConf({ cniVersion: '9.9.9' }) }), 1, /cniVersion "9\.9\.9" is not supported/);
    expectError(t, await cni('ADD', { pod: PODS[0], conf: netConf({ cniVersion: undefined }) }), 1, /cniVersion missing/);
    expectError(t, await cni('ADD', { pod: PODS[0], conf: netConf({ subnetfile: '/x' }) }), 2, /unknown key "subnetfile"/);
    expectError(t, await cni('ADD', { pod: PODS[0], conf: netConf({ name: undefined }) }), 7, /no "name"/);
    expectError(t, await cni('ADD', { pod: PODS[0], id: '../escape' }), 4, /not a valid container id/);
    writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.99.0.1/24\nFLANNEL_MTU=1410\n');
    expectError(t, await cni('ADD', { pod: PODS[0] }), 5, /FLANNEL_SUBNET 10\.99\.0\.0\/24 is outside FLANNEL_NETWORK/);
    writeSubnetEnv();
    // A delegate's own CNI error reaches the runtime unchanged.
    const r = await cni('ADD', { id: 'bad-netns', env: { CNI_NETNS: '/var/run/netns/wk8-cni-absent' } });
    t.not(r.code, 0);
    t.type(r.json.code, 'number', 'the bridge plugin\'s error code');
    t.match(r.json.msg, /netns|wk8-cni-absent/, 'the bridge plugin\'s message');
    t.equal((await cni('DEL', { id: 'bad-netns' })).code, 0, 'DEL after the failed ADD succeeds');
  });

  t.test('dual-stack subnet.env: ADD gives each pod an address of each family, both reach the other pod, DEL releases both', async (t) => {
    writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\n' +
      'FLANNEL_IPV6_NETWORK=2001:db8:10::/56\nFLANNEL_IPV6_SUBNET=2001:db8:10:7::1/64\nFLANNEL_MTU=1410\nFLANNEL_IPMASQ=true\n');
    const added: Record<string, any>[] = [];
    for (const pod of PODS) {
      const r = await cni('ADD', { pod });
      t.equal(r.code, 0, `${pod}: ADD exits 0`, { stdout: r.stdout, stderr: r.stderr });
      added.push(r.json);
    }
    const addrs = (res: Record<string, any>): string[] => (res.ips ?? []).map((ip: any) => String(ip.address));
    t.match(addrs(added[0]!), [/^10\.244\.7\.\d+\/24$/, /^2001:db8:10:7::[0-9a-f]+\/64$/], 'one address of each family, from the two ranges');
    const routes4 = podState(PODS[0]!).routes; // `ip route` lists IPv4; IPv6 needs -6
    t.ok(routes4.some((r: any) => r.dst === '10.244.0.0/16'), 'the IPv4 Network route is still there');
    const routes6 = JSON.parse(sh('ip', ['-n', PODS[0]!, '-6', '-json', 'route', 'show']));
    t.equal(routes6.find((r: any) => r.dst === '2001:db8:10::/56')?.gateway, '2001:db8:10:7::1', 'the IPv6 Network via the bridge');
    // A fresh IPv6 address is tentative until DAD ends: ping until it answers, up to 10 s.
    const target6 = addrs(added[0]!)[1]!.split('/')[0]!;
    const ping6 = (): boolean => spawnSync('ip', ['netns', 'exec', PODS[1]!, 'ping', '-6', '-c', '1', '-W', '1', target6]).status === 0;
    const until = Date.now() + 10_000;
    let reached = ping6();
    while (!reached && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200));
      reached = ping6();
    }
    t.ok(reached, `pod 2 reaches pod 1 over IPv6 (${target6})`);
    const checked = await cni('CHECK', { pod: PODS[0], conf: netConf({ prevResult: added[0] }) });
    t.equal(checked.code, 0, 'CHECK accepts a pod with both addresses', { stdout: checked.stdout, stderr: checked.stderr });
    sh('ip', ['-n', PODS[0]!, 'addr', 'del', addrs(added[0]!)[1]!, 'dev', 'eth0']);
    const missing6 = await cni('CHECK', { pod: PODS[0], conf: netConf({ prevResult: added[0] }) });
    t.not(missing6.code, 0, 'CHECK fails once the pod lost its IPv6 address');
    const ipamNet = join(ipamDir, 'wk8-cni');
    const leased = () => readdirSync(ipamNet).filter((f) => /^[0-9.]+$|:/.test(f));
    t.equal(leased().length, 4, 'two addresses per pod leased');
    for (const [k, pod] of PODS.entries()) {
      t.equal((await cni('DEL', { pod, conf: netConf({ prevResult: added[k] }) })).code, 0, `${pod}: DEL exits 0`);
    }
    t.same(leased(), [], 'host-local released all four addresses');
  });
}
