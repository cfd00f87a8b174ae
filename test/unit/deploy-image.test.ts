// The container image recipe, run as the plain scripts it is made of (no
// container engine here): build-rootfs.sh assembles the runtime tree, the
// CNI plugin in it runs with nothing from the host but /bin/sh, and
// install-cni.sh installs it atomically and idempotently.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { UDP_DEVICE } from '../../backends/udp/desired.js';
import { WEFT_NFT_TABLE } from '../../src/dataplane/nft.js';
import { WEFT_ROUTE_PROTO } from '../../src/dataplane/state.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const IMAGE = join(ROOT, 'deploy/image');

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: opts.env ?? process.env, input: opts.input, cwd: opts.cwd, timeout: 300_000 });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

const work = mkdtempSync(join(tmpdir(), 'wk8-image-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));
const out = join(work, 'rootfs');

t.test('build-rootfs.sh assembles the runtime tree', async (t) => {
  const started = Date.now();
  const r = run('bash', [join(IMAGE, 'build-rootfs.sh'), out]);
  t.comment(`build-rootfs.sh took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  t.equal(r.code, 0, 'the script succeeds', { stderr: r.stderr.slice(-2000) });
  if (r.code !== 0) return;
  const app = join(out, 'opt/weft');
  for (const f of ['usr/local/bin/node', 'usr/local/bin/weft', 'opt/weft/package.json', 'opt/weft/install-cni.sh', 'opt/weft/cleanup-node.sh', 'opt/weft/cni/weft', 'opt/weft/cni/weft-ipam']) {
    t.ok(existsSync(join(out, f)), `${f} is there`);
  }
  t.notOk(existsSync(join(app, 'node_modules/typescript')), 'no dev dependencies');
  t.ok(existsSync(join(app, 'node_modules/@kubernetes/client-node')), 'production dependencies');
  if (existsSync(join(ROOT, 'native/binding.gyp'))) {
    t.same(readdirSync(join(app, 'native/build/Release')).filter((f) => f.endsWith('.node')), ['weft_udp.node'], "the native addon, not the tests' binding");
  }

  // The application runs from the tree with its own node: the CLI loads and validates the shipped ConfigMap.
  const node = join(out, 'usr/local/bin/node');
  const help = run(node, [join(app, 'dist/src/cli/main.js'), 'agent', '--help']);
  t.equal(help.code, 0, 'weft agent --help runs from the tree', { stderr: help.stderr });
  const netConf = join(work, 'net-conf.json');
  writeFileSync(netConf, '{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}');
  const validate = run(node, [join(app, 'dist/src/cli/main.js'), 'config', 'validate', netConf]);
  t.equal(validate.code, 0, 'weft config validate runs from the tree', { stderr: validate.stderr });

  // The CNI payload: node, its libraries and loader, the plugin's JS; small JS closure.
  const payloads = readdirSync(join(app, 'cni')).filter((f) => /^weft-[0-9a-f]{12}$/.test(f));
  t.equal(payloads.length, 1, 'one payload, named by its content hash');
  const payload = join(app, 'cni', payloads[0]!);
  t.ok(existsSync(join(payload, 'app/node_modules/ipaddr.js')), 'with the one package the plugin imports');
  t.notOk(existsSync(join(payload, 'app/node_modules/@kubernetes')), 'and nothing else');
  t.ok(existsSync(join(payload, 'lib')) && readdirSync(join(payload, 'lib')).some((f) => f.startsWith('ld-linux')), 'ships its dynamic loader');

  // With an empty environment (no PATH, so no node of the host's) it answers VERSION.
  const version = run(join(app, 'cni/weft'), [], { env: { CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"1.0.0"}' });
  t.equal(version.code, 0, 'the plugin launcher runs without a host Node.js', { stderr: version.stderr });
  t.match(JSON.parse(version.stdout || '{}'), { cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  // weft-ipam runs from the same payload, its store's lock (the native addon) included: a GC on an empty store succeeds.
  const ipamDir = join(work, 'ipam-store');
  const gc = run(join(app, 'cni/weft-ipam'), [], {
    env: { CNI_COMMAND: 'GC' },
    input: JSON.stringify({ cniVersion: '1.1.0', name: 'weft', ipam: { type: 'weft-ipam', dataDir: ipamDir, ranges: [[{ subnet: '10.244.7.0/24' }]] }, 'cni.dev/valid-attachments': [] }),
  });
  t.same({ code: gc.code, stdout: gc.stdout, state: existsSync(join(ipamDir, 'weft/state.json')) }, { code: 0, stdout: '', state: true }, 'the weft-ipam launcher runs GC from the payload');

  const again = run('bash', [join(IMAGE, 'build-rootfs.sh'), out]);
  t.not(again.code, 0, 'refuses to write into a non-empty directory');
});

t.test('install-cni.sh installs atomically and idempotently', async (t) => {
  const src = join(out, 'opt/weft/cni');
  if (!existsSync(src)) return t.fail('needs the rootfs from the previous test');
  const host = join(work, 'host');
  const bin = join(host, 'opt/cni/bin');
  const confDir = join(host, 'etc/cni/net.d');
  const std = join(work, 'std-plugins');
  mkdirSync(std, { recursive: true });
  mkdirSync(bin, { recursive: true });
  for (const p of ['bridge', 'host-local', 'portmap', 'loopback']) writeFileSync(join(std, p), `#!/bin/sh\necho image-${p}\n`, { mode: 0o755 });
  writeFileSync(join(bin, 'bridge'), '#!/bin/sh\necho node-bridge\n', { mode: 0o755 }); // the node's own
  writeFileSync(join(bin, 'weft-0123456789ab'), ''); // a file, not a payload: left alone
  mkdirSync(join(bin, 'weft-000000000000')); // an old payload
  const conf = join(work, 'cni-conf.json');
  writeFileSync(conf, '{"cniVersion":"1.0.0","name":"weft","plugins":[{"type":"weft"}]}\n');
  const env = { PATH: process.env.PATH, WEFT_CNI_SRC: src, CNI_BIN_DIR: bin, CNI_CONF_DIR: confDir, CNI_CONF_SRC: conf, CNI_STD_PLUGINS: std };

  const first = run('sh', [join(IMAGE, 'install-cni.sh')], { env });
  t.equal(first.code, 0, 'first install', { stderr: first.stderr });
  const payload = readdirSync(src).find((f) => /^weft-[0-9a-f]{12}$/.test(f))!;
  t.ok(existsSync(join(bin, payload, '.complete')), 'the payload, marked complete');
  t.same(['weft', 'weft-ipam'].filter((f) => existsSync(join(bin, f))), ['weft', 'weft-ipam'], 'both plugin launchers installed');
  t.notOk(existsSync(join(bin, 'weft-000000000000')), 'the old payload removed');
  t.ok(existsSync(join(bin, 'weft-0123456789ab')), 'files that are not payloads left alone');
  t.equal(readFileSync(join(bin, 'bridge'), 'utf8'), '#!/bin/sh\necho node-bridge\n', "the node's own bridge plugin kept");
  t.equal(readFileSync(join(bin, 'host-local'), 'utf8'), '#!/bin/sh\necho image-host-local\n', 'a missing standard plugin supplied');
  t.same(readFileSync(join(bin, '.weft-installed'), 'utf8').trim().split('\n').sort(), ['host-local', 'loopback', 'portmap'], 'and recorded for uninstall');
  t.equal(readFileSync(join(confDir, '10-weft.conflist'), 'utf8'), readFileSync(conf, 'utf8'), 'the conflist in place');
  t.same(readdirSync(bin).filter((f) => f.includes('.tmp.')), [], 'no temporary files left');
  t.same(readdirSync(confDir), ['10-weft.conflist']);

  const version = run(join(bin, 'weft'), [], { env: { CNI_COMMAND: 'VERSION' }, input: '' });
  t.equal(version.code, 0, 'the installed plugin runs', { stderr: version.stderr });

  const payloadMtime = statSync(join(bin, payload, 'node')).mtimeMs;
  const second = run('sh', [join(IMAGE, 'install-cni.sh')], { env });
  t.equal(second.code, 0, 'second install');
  t.equal(statSync(join(bin, payload, 'node')).mtimeMs, payloadMtime, 'the payload is not copied again');
  t.same(readFileSync(join(bin, '.weft-installed'), 'utf8').trim().split('\n').sort(), ['host-local', 'loopback', 'portmap'], 'nothing recorded twice');

  const missing = run('sh', [join(IMAGE, 'install-cni.sh')], { env: { ...env, CNI_CONF_SRC: join(work, 'absent.json') } });
  t.not(missing.code, 0, 'a missing ConfigMap mount is an error');
  t.match(missing.stderr, /absent\.json does not exist; is the weft-config ConfigMap mounted/);
});

t.test('cleanup-node.sh removes exactly what weft owns', async (t) => {
  const script = readFileSync(join(IMAGE, 'cleanup-node.sh'), 'utf8');
  t.match(script, new RegExp(`^WEFT_ROUTE_PROTO=${WEFT_ROUTE_PROTO}$`, 'm'), 'the route protocol number is the code\'s');
  t.match(script, new RegExp(`nft delete table ${WEFT_NFT_TABLE}\\b`), "deletes weft's nftables table");
  t.match(script, new RegExp(`\\b${UDP_DEVICE} \\| weft\\.\\[0-9\\]\\*\\)`), 'deletes the udp device and the vxlan devices');
});

t.test('the Containerfile runs the same script', async (t) => {
  const file = readFileSync(join(IMAGE, 'Containerfile'), 'utf8');
  t.match(file, /deploy\/image\/build-rootfs\.sh \/rootfs/, 'assembly is build-rootfs.sh');
  t.match(file, /COPY --from=build \/rootfs\/ \//, 'and its tree is what the image gets');
  for (const pkg of ['iproute2', 'nftables', 'conntrack', 'bird2', 'containernetworking-plugins']) t.match(file, new RegExp(`\\b${pkg}\\b`), `runtime has ${pkg}`);
  for (const m of file.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
    for (const path of m[1]!.split(/\s+/)) t.ok(existsSync(join(ROOT, path)), `COPY source ${path} exists`);
  }
});
