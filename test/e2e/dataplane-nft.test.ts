// weft's nftables table against a real kernel, in scratch namespaces: the
// VXLAN port accepts peers only (and the same path works for anyone without
// the table), masquerade of pod traffic leaving the Network only (IPv4 and
// IPv6), restoration after the table is deleted or edited by hand, removal.
// Needs root.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import t from 'tap';
import { pino } from 'pino';
import { NftTable } from '../../src/dataplane/nft.js';

const NODE = 'wdp-nft-node';
const PEER = 'wdp-nft-peer';
const EVIL = 'wdp-nft-evil';
const POD = 'wdp-nft-pod';
const OUT = 'wdp-nft-out';

function sh(cmd: string, args: string[], check = true): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (check && r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
const ipn = (ns: string, ...args: string[]) => sh('ip', ['-n', ns, ...args]);
const nft = (...args: string[]) => spawnSync('ip', ['netns', 'exec', NODE, 'nft', ...args], { encoding: 'utf8' });

function cleanup(): void {
  for (const ns of sh('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0] ?? '')) {
    if (ns.startsWith('wdp-nft-')) spawnSync('ip', ['netns', 'del', ns]);
  }
}

/** A veth pair from the node namespace to `ns`, addressed on both ends. */
function wire(ns: string, nodeDev: string, nodeAddr: string, farAddr: string): void {
  sh('ip', ['netns', 'add', ns]);
  ipn(NODE, 'link', 'add', nodeDev, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  ipn(NODE, 'addr', 'add', nodeAddr, 'dev', nodeDev);
  ipn(NODE, 'link', 'set', nodeDev, 'up');
  ipn(ns, 'addr', 'add', farAddr, 'dev', 'eth0');
  ipn(ns, 'link', 'set', 'eth0', 'up');
  ipn(ns, 'link', 'set', 'lo', 'up');
}

/** A UDP receiver in `ns`: every datagram becomes "source payload" in `got`. */
async function receiver(ns: string, port: number, type: 'udp4' | 'udp6' = 'udp4'): Promise<{ got: string[]; child: ChildProcess }> {
  const script = `const s=require('dgram').createSocket('${type}');`
    + "s.on('message',(m,r)=>process.stdout.write(r.address+' '+m+'\\n'));"
    + "s.bind(Number(process.argv[1]),()=>process.stdout.write('ready\\n'));";
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const got: string[] = [];
  await new Promise<void>((resolve, reject) => {
    child.on('exit', () => reject(new Error(`receiver in ${ns} exited`)));
    createInterface({ input: child.stdout! }).on('line', (l) => (l === 'ready' ? resolve() : got.push(l)));
  });
  return { got, child };
}

function send(ns: string, host: string, port: number, payload: string): void {
  sh('ip', ['netns', 'exec', ns, 'bash', '-c', `printf %s ${payload} > /dev/udp/${host}/${port}`]);
}

async function waitFor(cond: () => boolean, what: string, deadlineMs = 10_000): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > deadlineMs) throw new Error(`not within ${deadlineMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - start;
}
const settle = () => new Promise((r) => setTimeout(r, 300));

if (process.getuid?.() !== 0) {
  t.fail('this test needs root (network namespaces); run it as root');
} else {
  cleanup();
  const children: ChildProcess[] = [];
  t.teardown(() => {
    for (const c of children) c.kill();
    cleanup();
  });
  sh('ip', ['netns', 'add', NODE]);
  ipn(NODE, 'link', 'set', 'lo', 'up');
  wire(PEER, 'to-peer', '10.98.0.1/24', '10.98.0.2/24');
  wire(EVIL, 'to-evil', '10.97.0.1/24', '10.97.0.2/24');
  wire(POD, 'to-pod', '10.5.1.1/24', '10.5.1.2/24');
  wire(OUT, 'to-out', '203.0.113.1/24', '203.0.113.2/24');
  ipn(POD, 'route', 'add', 'default', 'via', '10.5.1.1');
  ipn(OUT, 'addr', 'add', '203.0.113.3/24', 'dev', 'eth0');
  ipn(OUT, 'addr', 'add', '10.5.2.2/32', 'dev', 'lo'); // a pod on another node
  ipn(OUT, 'route', 'add', '10.5.0.0/16', 'via', '203.0.113.1');
  ipn(NODE, 'route', 'add', '10.5.2.0/24', 'via', '203.0.113.2');
  sh('ip', ['netns', 'exec', NODE, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);

  const spawned: string[][] = [];
  const table = new NftTable({ logger: pino({ level: process.env.WDP_LOG ?? 'silent' }), netns: NODE, resyncMs: 200, onSpawn: (a) => spawned.push([...a]) });

  t.test('the VXLAN port accepts peers only; the set follows the peers', async (t) => {
    const rx = await receiver(NODE, 8472);
    children.push(rx.child);
    send(EVIL, '10.97.0.1', 8472, 'evil-before');
    await waitFor(() => rx.got.includes('10.97.0.2 evil-before'), 'without the table the outsider gets through');

    spawned.length = 0;
    t.same(await table.apply({ vxlanPort: 8472, allowedPeers: ['10.98.0.2'] }), { written: true });
    t.equal(spawned.filter((a) => a.includes('-f')).length, 1, 'one nft -f for the whole table');
    send(EVIL, '10.97.0.1', 8472, 'evil-after');
    send(PEER, '10.98.0.1', 8472, 'peer');
    await waitFor(() => rx.got.includes('10.98.0.2 peer'), 'a peer gets through');
    await settle();
    t.notOk(rx.got.includes('10.97.0.2 evil-after'), 'the outsider is dropped');

    t.same(await table.apply({ vxlanPort: 8472, allowedPeers: ['10.98.0.2'] }), { written: false }, 'same rules: nothing written');
    await table.apply({ vxlanPort: 8472, allowedPeers: ['10.98.0.2', '10.97.0.2'] });
    send(EVIL, '10.97.0.1', 8472, 'evil-joined');
    await waitFor(() => rx.got.includes('10.97.0.2 evil-joined'), 'a new peer is let in');
    await table.apply({ vxlanPort: 8472, allowedPeers: ['10.98.0.2'] });
    send(EVIL, '10.97.0.1', 8472, 'evil-left');
    send(PEER, '10.98.0.1', 8472, 'peer-again');
    await waitFor(() => rx.got.includes('10.98.0.2 peer-again'), 'peer still in');
    await settle();
    t.notOk(rx.got.includes('10.97.0.2 evil-left'), 'a peer that left is dropped again');
    rx.child.kill();
  });

  t.test('masquerade: pods leaving the Network get the node address; pod-to-pod and kube-proxy-marked keep theirs', async (t) => {
    // kube-proxy's own masquerade mark, set on traffic to one service address.
    const mark = spawnSync('ip', ['netns', 'exec', NODE, 'nft', '-f', '-'], {
      input: 'table ip wdp_kubeproxy {\n chain pre {\n  type filter hook prerouting priority mangle; policy accept;\n  ip daddr 203.0.113.3 meta mark set 0x4000\n }\n}\n',
      encoding: 'utf8',
    });
    t.equal(mark.status, 0, mark.stderr);
    await table.apply({ vxlanPort: 8472, allowedPeers: ['10.98.0.2'], masquerade: [{ network: '10.5.0.0/16', podSubnet: '10.5.1.0/24' }], forwardNetworks: ['10.5.0.0/16'] });
    const rx = await receiver(OUT, 9999);
    children.push(rx.child);
    send(POD, '203.0.113.2', 9999, 'outside');
    send(POD, '10.5.2.2', 9999, 'pod-to-pod');
    send(POD, '203.0.113.3', 9999, 'marked');
    await waitFor(() => rx.got.length === 3, 'three datagrams');
    t.same(rx.got.sort(), ['10.5.1.2 marked', '10.5.1.2 pod-to-pod', '203.0.113.1 outside']);
    rx.child.kill();
  });

  t.test('IPv6 masquerade: pods leaving the IPv6 Network get the node address; pod-to-pod keeps its own', async (t) => {
    // The same wiring in IPv6 (nodad: no duplicate-address wait in scratch namespaces).
    const add6 = (ns: string, addr: string, dev: string): string => ipn(ns, '-6', 'addr', 'add', addr, 'dev', dev, 'nodad');
    add6(NODE, '2001:db8:5:1::1/64', 'to-pod');
    add6(POD, '2001:db8:5:1::2/64', 'eth0');
    add6(NODE, '2001:db8:ff::1/64', 'to-out');
    add6(OUT, '2001:db8:ff::2/64', 'eth0');
    add6(OUT, '2001:db8:5:2::2/128', 'lo'); // a pod on another node
    ipn(POD, '-6', 'route', 'add', 'default', 'via', '2001:db8:5:1::1');
    ipn(OUT, '-6', 'route', 'add', '2001:db8:5::/56', 'via', '2001:db8:ff::1');
    ipn(NODE, '-6', 'route', 'add', '2001:db8:5:2::/64', 'via', '2001:db8:ff::2');
    sh('ip', ['netns', 'exec', NODE, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
    await table.apply({
      vxlanPort: 8472,
      allowedPeers: ['10.98.0.2'],
      masquerade: [{ network: '10.5.0.0/16', podSubnet: '10.5.1.0/24' }, { network: '2001:db8:5::/56', podSubnet: '2001:db8:5:1::/64' }],
      forwardNetworks: ['10.5.0.0/16', '2001:db8:5::/56'],
    });
    const rx = await receiver(OUT, 9998, 'udp6');
    children.push(rx.child);
    send(POD, '2001:db8:ff::2', 9998, 'outside6');
    send(POD, '2001:db8:5:2::2', 9998, 'pod-to-pod6');
    await waitFor(() => rx.got.length === 2, 'two datagrams');
    t.same(rx.got.sort(), ['2001:db8:5:1::2 pod-to-pod6', '2001:db8:ff::1 outside6']);
    rx.child.kill();
  });

  t.test('the table comes back when deleted or edited by hand, and goes on remove', async (t) => {
    table.start();
    t.teardown(() => table.stop());
    let start = Date.now();
    t.equal(nft('delete', 'table', 'inet', 'weft').status, 0);
    await waitFor(() => nft('list', 'table', 'inet', 'weft').status === 0, 'table restored');
    t.comment(`deleted table restored in ${Date.now() - start} ms (check every 200 ms)`);
    t.match(nft('list', 'table', 'inet', 'weft').stdout, /masquerade/);

    start = Date.now();
    t.equal(nft('flush', 'chain', 'inet', 'weft', 'input').status, 0);
    await waitFor(() => /udp dport 8472 drop/.test(nft('list', 'chain', 'inet', 'weft', 'input').stdout), 'chain rewritten');
    t.comment(`flushed chain rewritten in ${Date.now() - start} ms`);

    await table.remove();
    t.not(nft('list', 'table', 'inet', 'weft').status, 0, 'table gone');
    await new Promise((r) => setTimeout(r, 500));
    t.not(nft('list', 'table', 'inet', 'weft').status, 0, 'and not restored after removal');
    t.equal(nft('list', 'table', 'ip', 'wdp_kubeproxy').status, 0, 'other tables untouched');
    await table.remove(); // removing twice is fine
  });
}
