// deploy/image/cleanup-node.sh (what `deploy/uninstall` runs on each node),
// in a namespace standing in for a node: weft's routes, devices, nftables
// table and CNI files go; everything else stays. Needs root.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const NS = 'wk8-cleanup';

function inNs(args: string[], env: NodeJS.ProcessEnv = process.env) {
  const r = spawnSync('ip', ['netns', 'exec', NS, ...args], { encoding: 'utf8', env });
  if (r.status !== 0 && args[0] !== 'sh') throw new Error(`${args.join(' ')}: ${r.stderr}`);
  return r;
}

if (process.getuid?.() !== 0) {
  t.fail('this test needs root (network namespaces); run it as root');
} else {
  spawnSync('ip', ['netns', 'del', NS]);
  const host = mkdtempSync(join(tmpdir(), 'wk8-cleanup-'));
  t.teardown(() => {
    spawnSync('ip', ['netns', 'del', NS]);
    rmSync(host, { recursive: true, force: true });
  });

  // Set-up, not a test: a node with weft installed and running.
  {
    spawnSync('ip', ['netns', 'add', NS]);
    for (const cmd of [
      'ip link set lo up',
      'ip link add wk8d0 type veth peer name wk8d1',
      'ip addr add 10.88.0.1/24 dev wk8d0',
      'ip link set wk8d0 up',
      'ip link add weft.1 type vxlan id 1 dstport 8472 dev wk8d0',
      'ip tuntap add weft0 mode tun',
      'ip link add cni0 type bridge',
      'ip link add weftish type bridge',
      'ip route add 10.244.2.0/24 via 10.88.0.2 proto 147',
      'ip route add 10.244.3.0/24 via 10.88.0.3 proto bird',
      'ip route add 10.50.0.0/24 via 10.88.0.4 proto static',
      'nft add table inet weft',
      'nft add table inet other',
    ]) {
      inNs(cmd.split(' '));
    }
    const files: Record<string, string> = {
      'etc/cni/net.d/10-weft.conflist': '{}',
      'etc/cni/net.d/99-other.conflist': '{}',
      'opt/cni/bin/weft': '#!/bin/sh\n',
      'opt/cni/bin/weft-0123456789ab/node': '',
      'opt/cni/bin/bridge': 'the node\'s own',
      'opt/cni/bin/host-local': 'installed by weft',
      'opt/cni/bin/.weft-installed': 'host-local\n',
      'run/weft/subnet.env': 'FLANNEL_SUBNET=10.244.1.1/24\n',
      'run/weft/bird/bird.conf': '',
      'var/lib/cni/weft/c1-eth0.json': '{}',
    };
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(host, path)), { recursive: true });
      writeFileSync(join(host, path), text);
    }
  }

  t.test('cleanup-node.sh takes down weft and only weft', async (t) => {
    const script = join(ROOT, 'deploy/image/cleanup-node.sh');
    const r = inNs(['sh', script], { ...process.env, HOST_ROOT: host });
    t.equal(r.status, 0, 'exits 0', { stdout: r.stdout, stderr: r.stderr });
    t.match(r.stdout, /deleted device weft\.1/);

    const links = JSON.parse(inNs(['ip', '-json', 'link', 'show']).stdout).map((l: any) => l.ifname).sort();
    t.same(links, ['lo', 'weftish', 'wk8d0', 'wk8d1'], 'weft.1, weft0 and cni0 gone; other devices kept');
    const routes = JSON.parse(inNs(['ip', '-json', 'route', 'show']).stdout).map((r: any) => r.dst).sort();
    t.same(routes, ['10.50.0.0/24', '10.88.0.0/24'], "weft's and BIRD's routes gone; others kept");
    const tables = inNs(['nft', 'list', 'tables']).stdout;
    t.notMatch(tables, /table inet weft\b/, "weft's nftables table gone");
    t.match(tables, /table inet other/, 'other tables kept');

    t.same(readdirSync(join(host, 'etc/cni/net.d')), ['99-other.conflist'], 'weft conflist gone, others kept');
    t.same(readdirSync(join(host, 'opt/cni/bin')), ['bridge'], 'plugin, payload and the standard plugin weft installed gone');
    t.same(readdirSync(join(host, 'run/weft')), [], 'runtime state emptied');
    t.same(readdirSync(join(host, 'var/lib/cni/weft')), [], 'saved CNI delegate configs emptied');

    const again = inNs(['sh', script], { ...process.env, HOST_ROOT: host });
    t.equal(again.status, 0, 'a second run succeeds too', { stderr: again.stderr });
    t.ok(existsSync(join(host, 'opt/cni/bin/bridge')));
  });
}
