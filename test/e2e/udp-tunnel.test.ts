// The udp backend end to end: three nodes (two fast, one simple) in network
// namespaces, a pod behind each, the backend running in a child per node.
import t from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { countedUdpFlow } from '../support/udp-flow.js';
import { UdpTestbed, inNs, run } from '../support/udp-testbed.js';
import { addPinnedPod } from './support/pinned-pod.js';
import { stopUdpLoop } from '../../backends/udp/loop-client.js';
import type { UdpCounters } from '../../backends/udp/native.js';
import { PROTO_ICMP, PROTO_TCP, PROTO_UDP, icmpEcho, ipPacket, tcpSegment, udpDatagram } from '../../backends/udp/packets.js';

const PREFIX = 'wud';

/** Polls `check` until it returns true or the deadline passes. */
async function until(check: () => Promise<boolean>, deadlineMs: number, stepMs = 200): Promise<boolean> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

function sumDrops(d: Record<string, number>): number {
  return Object.values(d).reduce((a, b) => a + b, 0);
}

/** Starts tcpdump in a pod, waits until it listens; resolves to the number of packets it saw. */
/**
 * Starts tcpdump in `ns` and resolves once it listens. The returned function
 * ends the capture and counts the packets: at once when `want` packets have
 * been seen, else `seconds` after it is called (the window a negative check
 * waits). tcpdump's start-up never eats into that window.
 */
async function capture(ns: string, filter: string, seconds: number): Promise<(want?: number) => Promise<number>> {
  const child = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '-n', '-l', '-i', `${PREFIX}-pod`, filter], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const count = (): number => out.split('\n').filter((l) => l.trim()).length;
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve) => {
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('listening on')) resolve();
    });
    child.on('exit', () => resolve());
  });
  return async (want?: number) => {
    await until(async () => (want !== undefined && count() >= want) || child.exitCode !== null, seconds * 1000, 20);
    child.kill('SIGINT');
    await new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));
    return count();
  };
}

/** One iperf3 run from a pod to a pod; the server is a one-off child. */
async function iperf(fromNs: string, toNs: string, toIp: string, args: string[]): Promise<{ bps: number; ok: boolean; out: string }> {
  const server = spawn('ip', ['netns', 'exec', toNs, 'iperf3', '-s', '-1', '-p', '5201'], { stdio: 'ignore' });
  try {
    await until(async () => (await inNs(toNs, 'ss', ['-ltn', 'sport = :5201'])).stdout.includes('5201'), 5000, 50);
    const r = await inNs(fromNs, 'iperf3', ['-c', toIp, '-p', '5201', '-J', ...args], 120_000);
    try {
      const j = JSON.parse(r.stdout);
      return { bps: j.end?.sum_received?.bits_per_second ?? 0, ok: r.code === 0 && !j.error, out: j.error ?? '' };
    } catch {
      return { bps: 0, ok: false, out: r.stdout + r.stderr };
    }
  } finally {
    server.kill('SIGKILL');
  }
}

if (process.getuid?.() !== 0) {
  t.fail('the udp e2e tests need root (network namespaces, TUN devices); run them as root');
} else {
  const tb = await UdpTestbed.create({ prefix: PREFIX, nodes: 3 });
  t.teardown(() => tb.destroy());
  const [n1, n2, n3] = tb.nodes as [typeof tb.nodes[0], typeof tb.nodes[0], typeof tb.nodes[0]];
  const started = Date.now();
  let [a, b, c] = await Promise.all([
    tb.startNode(n1, { kind: 'backend', backend: { Queues: 2 } }),
    tb.startNode(n2, { kind: 'backend', backend: { Queues: 1 } }),
    tb.startNode(n3, { kind: 'backend', backend: { Mode: 'simple' } }),
  ]);
  t.comment(`three nodes up in ${Date.now() - started} ms`);
  await Promise.all([a.sync(tb.peersOf(n1)), b.sync(tb.peersOf(n2)), c.sync(tb.peersOf(n3))]);

  const ping = (fromNs: string, dst: string, ...args: string[]) => inNs(fromNs, 'ping', ['-n', '-c', '1', '-W', '2', ...args, dst], 30_000);

  t.test('features were probed and the device configured', async (t) => {
    const fa = await a.features();
    const fc = await c.features();
    t.match(fa, { device: 'weft0', mode: 'fast', queues: 2, vnetHdr: true }, 'fast node');
    t.match(fc, { device: 'weft0', mode: 'simple', queues: 1, vnetHdr: false, tso: false }, 'simple node');
    t.comment(`fast node features: ${JSON.stringify(fa)}`);
    const link = await inNs(n1.ns, 'ip', ['-o', 'link', 'show', 'weft0']);
    t.match(link.stdout, /mtu 1472/, 'MTU is the underlay MTU minus 28');
    const addr = await inNs(n1.ns, 'ip', ['-o', 'addr', 'show', 'dev', 'weft0']);
    t.match(addr.stdout, /10\.250\.1\.0\/32/);
  });

  t.test('every pod reaches every other pod (fast <-> fast, fast <-> simple)', async (t) => {
    for (const from of tb.nodes) {
      for (const to of tb.nodes) {
        if (from === to) continue;
        const ok = await until(async () => (await ping(from.podNs, to.pod)).code === 0, 10_000);
        t.ok(ok, `pod ${from.index} -> pod ${to.index}`);
      }
    }
  });

  t.test('TCP flows through the tunnel in both modes', async (t) => {
    const fast = await iperf(n1.podNs, n2.podNs, n2.pod, ['-t', '2']);
    t.ok(fast.ok && fast.bps > 0, `fast -> fast: ${(fast.bps / 1e9).toFixed(2)} Gbit/s ${fast.out}`);
    const mixed = await iperf(n1.podNs, n3.podNs, n3.pod, ['-t', '2']);
    t.ok(mixed.ok && mixed.bps > 0, `fast -> simple: ${(mixed.bps / 1e9).toFixed(2)} Gbit/s ${mixed.out}`);
    const back = await iperf(n3.podNs, n1.podNs, n1.pod, ['-t', '2']);
    t.ok(back.ok && back.bps > 0, `simple -> fast: ${(back.bps / 1e9).toFixed(2)} Gbit/s ${back.out}`);
    const counters = await b.counters();
    t.ok(counters.udpRxGroMessages > 0 && counters.tunTxCoalesced > 0, 'the fast receiver used GRO and coalescing');
  });

  // Every datagram of a flow, each checked on arrival (udp-flow.py).
  const whole = { received: 3000, intact: 3000, corrupt: 0, duplicates: 0, digestMatches: true };

  t.test('a UDP GSO flow arrives whole and intact, carried as UDP superpackets both ways (USO)', async (t) => {
    const before = await Promise.all([a.counters(), b.counters()]);
    const flow = await countedUdpFlow(n1.podNs, n2.podNs, n2.pod, 7001);
    const [ka, kb] = await Promise.all([a.counters(), b.counters()]);
    t.match([await a.features(), await b.features()], [{ uso: true }, { uso: true }], 'USO on both fast nodes');
    t.same(flow, whole, 'every datagram, intact, boundaries kept');
    t.ok(ka.tunRxSuperpackets > before[0]!.tunRxSuperpackets && kb.tunTxCoalesced > before[1]!.tunTxCoalesced, 'read from TUN as superpackets, written to TUN coalesced');
  });

  const probe = (src: string) =>
    ipPacket({ src, dst: n1.pod, proto: PROTO_UDP }, udpDatagram(src, n1.pod, 4444, 7777, Buffer.from('weft-probe')));

  t.test('a datagram from a non-peer never reaches the pod; the same from the peer does', async (t) => {
    const before = await a.counters();
    let seen = await capture(n1.podNs, 'udp port 7777', 3);
    await tb.fuzz(tb.switchNs, tb.outsider, n1.underlay, Array.from({ length: 5 }, () => probe(n2.pod)));
    t.equal(await seen(), 0, 'nothing captured in the pod');
    const after = await a.counters();
    t.equal(after.dropsInbound.notPeer - before.dropsInbound.notPeer, 5, 'counted as notPeer');
    seen = await capture(n1.podNs, 'udp port 7777', 3);
    await tb.fuzz(n2.ns, n2.underlay, n1.underlay, [probe(n2.pod)]);
    t.equal(await seen(1), 1, 'the control datagram from the peer arrives');
  });

  t.test("an inner source outside the sending peer's subnet is dropped", async (t) => {
    const before = await a.counters();
    const seen = await capture(n1.podNs, 'udp port 7777', 3);
    await tb.fuzz(n2.ns, n2.underlay, n1.underlay, [probe(n3.pod), probe('10.99.0.1'), probe(n1.pod)]);
    t.equal(await seen(), 0, 'nothing captured in the pod');
    const after = await a.counters();
    t.equal(after.dropsInbound.spoofedSource - before.dropsInbound.spoofedSource, 3, 'counted as spoofedSource');
  });

  t.test('a DF ping over the path MTU gets fragmentation-needed, and TCP adapts', async (t) => {
    // The underlay path to node 2 is narrower than the tunnel expects, as if learned by PMTU discovery.
    await inNs(n1.ns, 'ip', ['route', 'replace', `${n2.underlay}/32`, 'dev', n1.dev, 'mtu', '1400']);
    t.teardown(async () => {
      await inNs(n1.ns, 'ip', ['route', 'del', `${n2.underlay}/32`, 'dev', n1.dev]);
      await inNs(n1.podNs, 'ip', ['route', 'flush', 'cache']);
    });
    const before = await a.counters();
    const r = await inNs(n1.podNs, 'ping', ['-n', '-M', 'do', '-s', '1444', '-c', '3', '-i', '0.3', '-W', '1', n2.pod], 30_000);
    t.match(r.stdout + r.stderr, /mtu ?= ?1372/, 'the pod learns MTU 1372 (1400 - 28)');
    const after = await a.counters();
    t.ok(after.icmpTooBig > before.icmpTooBig, 'the loop sent fragmentation-needed');
    t.ok(after.dropsOutbound.tooBig > before.dropsOutbound.tooBig, 'and counted the packet as tooBig');
    const small = await ping(n1.podNs, n2.pod, '-M', 'do', '-s', '1344');
    t.equal(small.code, 0, 'a packet that fits still passes');
    const tcp = await iperf(n1.podNs, n2.podNs, n2.pod, ['-n', '4M']);
    t.ok(tcp.ok && tcp.bps > 0, `TCP completes over the narrower path (${(tcp.bps / 1e6).toFixed(0)} Mbit/s)`);
  });

  t.test('no peer for the destination: rate-limited net-unreachable; TTL expiry: time-exceeded', async (t) => {
    const one = await ping(n1.podNs, '10.250.9.5');
    t.match(one.stdout, /From 10\.250\.9\.5 .*Destination Net Unreachable/, 'net unreachable, from the destination');
    const before = await a.counters();
    // One burst far larger than the limiter's bucket, however slowly the machine runs it.
    const burst = `const s = require('node:dgram').createSocket('udp4'); let left = 400;
      for (let i = 0; i < 400; i++) s.send(Buffer.alloc(16), 9, '10.250.9.5', () => { if (--left === 0) s.close(); });`;
    await inNs(n1.podNs, process.execPath, ['-e', burst], 60_000);
    // Wait until the burst has been counted and the counter has settled.
    let after = before;
    let last = -1;
    await until(async () => {
      after = await a.counters();
      const settled = after.dropsOutbound.noRoute === last;
      last = after.dropsOutbound.noRoute;
      return settled && last - before.dropsOutbound.noRoute >= 400;
    }, 10_000, 500);
    const noRoute = after.dropsOutbound.noRoute - before.dropsOutbound.noRoute;
    const sent = after.icmpUnreachable - before.icmpUnreachable;
    const limited = after.icmpRateLimited - before.icmpRateLimited;
    t.ok(noRoute >= 400, `every packet counted as noRoute (${noRoute})`);
    t.equal(sent + limited, noRoute, 'each answered or rate-limited');
    t.ok(limited > 0 && sent > 0, `rate limit engaged (${sent} sent, ${limited} held back)`);
    const ttl = await ping(n1.podNs, n2.pod, '-t', '2');
    t.match(ttl.stdout, /From 10\.250\.2\.0 .*Time to live exceeded/, 'time exceeded, from the tunnel end');
  });

  t.test('an underlay without checksum offload still carries the tunnel', async (t) => {
    // Older kernels refuse UDP GSO with EIO here (the loop then sends single
    // datagrams); newer ones checksum in software. Either way nothing is lost.
    await inNs(n1.ns, 'ethtool', ['-K', n1.dev, 'tx', 'off']);
    t.teardown(() => inNs(n1.ns, 'ethtool', ['-K', n1.dev, 'tx', 'on']));
    const before = await a.counters();
    const r = await iperf(n1.podNs, n2.podNs, n2.pod, ['-t', '2']);
    t.ok(r.ok && r.bps > 0, `TCP still flows (${(r.bps / 1e9).toFixed(2)} Gbit/s)`);
    const after = await a.counters();
    const fellBack = after.udpGsoDisabled === 1;
    t.ok(fellBack || after.udpTxGsoMessages > before.udpTxGsoMessages, fellBack ? 'EIO: fell back to single datagrams' : 'the kernel accepted UDP GSO without offload');
    t.equal((await a.features()).udpGso, !fellBack, 'features say which');
    t.equal(after.dropsOutbound.sendError - before.dropsOutbound.sendError, 0, 'no packet lost');
  });

  t.test('node 3 as a fast loop without UDP GSO or USO', async (t) => {
    // Node 3 switches from simple mode to a fast loop on the same device.
    // The backend's loop process outlives it: stop that too, keeping the device.
    await c.stop(false);
    await stopUdpLoop(n3.runDir, { teardown: false });
    c = await tb.startNode(n3, { kind: 'loop', loop: { offload: { gso: false, uso: false } } });
    await c.sync(tb.peersOf(n3));

    await t.test('with USO off, a UDP flow arrives whole and intact both ways', async (t) => {
      // Node 3 reads datagrams one by one (the kernel cuts the sender's
      // trains before TUN) and writes each alone.
      const to = await countedUdpFlow(n1.podNs, n3.podNs, n3.pod, 7002);
      const from = await countedUdpFlow(n3.podNs, n1.podNs, n1.pod, 7003);
      const k = await c.counters();
      t.match(await c.features(), { mode: 'fast', vnetHdr: true, uso: false }, 'USO off');
      t.same({ to, from }, { to: whole, from: whole }, 'every datagram, intact, to and from the node without USO');
      t.same({ superpacketsRead: k.tunRxSuperpackets, coalescedWrites: k.tunTxCoalesced }, { superpacketsRead: 0, coalescedWrites: 0 }, 'no superpacket either way');
    });

    await t.test('a tiny MSS without UDP GSO: superpackets of over 100 segments split in chunks', async (t) => {
      const r = await iperf(n3.podNs, n1.podNs, n1.pod, ['-t', '2', '-M', '500']);
      t.ok(r.ok && r.bps > 0, `TCP with MSS 500 flows (${(r.bps / 1e6).toFixed(0)} Mbit/s)`);
      const k = await c.counters();
      t.ok(k.tunRxSuperpackets > 0 && k.udpTxGsoMessages === 0, 'superpackets were split into single datagrams');
      t.equal(k.dropsOutbound.sendError + k.dropsOutbound.badSuperpacket, 0, 'nothing dropped');
    });

    await c.stop(false);
    c = await tb.startNode(n3, { kind: 'backend', backend: { Mode: 'simple' } });
    await c.sync(tb.peersOf(n3));
    t.ok(await until(async () => (await ping(n3.podNs, n1.pod)).code === 0, 10_000), 'back in simple mode on the same device');
  });

  t.test("a pinned pod's address borrowed by node 3 is reached from node 1's pod", async (t) => {
    // 10.250.9.200 is in no node's subnet: node 3's loop must take traffic for it all the same.
    // Node 3 keeps the address in its lease for the tests after this one; it changes nothing for them.
    const borrowed = '10.250.9.200';
    await c.stop(false);
    c = await tb.startNode(n3, { kind: 'backend', backend: { Mode: 'simple' }, borrowedIPs: [`${borrowed}/32`] });
    await c.sync(tb.peersOf(n3));
    const pin = `${PREFIX}-pin`;
    await addPinnedPod(n3.ns, pin, `${PREFIX}-pin`, borrowed);
    try {
      await a.sync(tb.peersOf(n1).map((p) => (p.subnet === n3.subnet ? { ...p, borrowedIPs: [`${borrowed}/32`] } : p)));
      t.ok(await until(async () => (await ping(n1.podNs, borrowed)).code === 0, 10_000), `node 1's pod pings ${borrowed} behind node 3`);
    } finally {
      await run('ip', ['netns', 'del', pin]); // and with it the veth, and the route over it
      await a.sync(tb.peersOf(n1));
    }
  });

  t.test('the peer table is swapped under traffic without disturbing it', async (t) => {
    const before = await a.counters();
    const extra = Array.from({ length: 50 }, (_, i) => ({ subnet: `10.250.${100 + i}.0/24`, publicIP: `192.0.2.${100 + i}` }));
    const traffic = iperf(n1.podNs, n2.podNs, n2.pod, ['-t', '3']);
    let swaps = 0;
    const end = Date.now() + 2500;
    while (Date.now() < end) {
      await a.sync(swaps % 2 ? tb.peersOf(n1) : [...extra, ...tb.peersOf(n1)]);
      swaps++;
    }
    const r = await traffic;
    t.ok(r.ok && r.bps > 0, `iperf completed during ${swaps} swaps (${(r.bps / 1e9).toFixed(2)} Gbit/s)`);
    const after = await a.counters();
    t.ok(after.tableSwapsSeen > before.tableSwapsSeen, 'workers picked up new tables');
    const missed = after.dropsOutbound.noRoute - before.dropsOutbound.noRoute;
    t.equal(missed, 0, `no packet ever missed its peer (${JSON.stringify(after.dropsOutbound)} vs ${JSON.stringify(before.dropsOutbound)})`);
    await a.sync(tb.peersOf(n1));
  });

  t.test('fuzz: 100,000 random and mutated datagrams', async (t) => {
    // The baseline only once the tunnel is quiet: the previous test's iperf server, killed
    // as it ended, may still be closing its connection from node 2 to node 1, and a
    // datagram counted by b before b0 but by a after a0 would be unbalanced for ever.
    let a0 = await a.counters();
    let b0 = await b.counters();
    await until(async () => {
      const [a1, b1] = [await a.counters(), await b.counters()];
      const quiet = a1.udpRxDatagrams === a0.udpRxDatagrams && b1.udpTxDatagrams === b0.udpTxDatagrams;
      [a0, b0] = [a1, b1];
      return quiet;
    }, 10_000, 300);
    const fromPeer: Buffer[] = [];
    const fromOutsider: Buffer[] = [];
    const rnd = (n: number) => Math.floor(Math.random() * n);
    const valid = (): Buffer => {
      const src = n2.pod;
      switch (rnd(3)) {
        case 0: return ipPacket({ src, dst: n1.pod, proto: PROTO_ICMP }, icmpEcho(src, n1.pod, rnd(65536), rnd(65536), randomBytes(rnd(64))));
        case 1: return ipPacket({ src, dst: n1.pod, proto: PROTO_UDP }, udpDatagram(src, n1.pod, 1024 + rnd(60000), 9, randomBytes(rnd(512))));
        default: return ipPacket({ src, dst: n1.pod, proto: PROTO_TCP }, tcpSegment(src, n1.pod, { sport: 1024 + rnd(60000), dport: 9, seq: rnd(2 ** 32), flags: 1 << rnd(6) }, randomBytes(rnd(512))));
      }
    };
    const mutate = (p: Buffer): Buffer => {
      const m = Buffer.from(p);
      const how = rnd(4);
      if (how === 0) return m.subarray(0, rnd(m.length + 1));
      if (how === 1) return Buffer.from([...m, ...randomBytes(1 + rnd(16))]);
      for (let i = 1 + rnd(4); i > 0; i--) m[rnd(Math.min(m.length, 48))] = rnd(256);
      return m;
    };
    for (let i = 0; i < 100_000; i++) {
      const kind = rnd(100);
      let d: Buffer;
      if (kind < 25) d = randomBytes(rnd(1400));
      else if (kind < 75) d = mutate(valid());
      else if (kind < 85) d = ipPacket({ src: `10.250.${rnd(256)}.${rnd(256)}`, dst: n1.pod, proto: PROTO_UDP }, udpDatagram('10.250.3.5', n1.pod, 1, 9, randomBytes(8)));
      else d = ipPacket({ src: n2.pod, dst: n3.pod, proto: PROTO_ICMP }, icmpEcho(n2.pod, n3.pod, 1, 1, randomBytes(8)));
      (i % 10 < 8 ? fromPeer : fromOutsider).push(d);
    }
    const started = Date.now();
    const [p, o] = [await tb.fuzz(n2.ns, n2.underlay, n1.underlay, fromPeer), await tb.fuzz(tb.switchNs, tb.outsider, n1.underlay, fromOutsider)];
    const sent = p.sent + o.sent;
    t.comment(`sent ${sent} datagrams in ${Date.now() - started} ms (${p.failed + o.failed} refused locally)`);
    t.ok(sent >= 100_000 - (p.failed + o.failed) && sent > 99_000, 'at least 99,000 datagrams left the fuzzers');

    // A ping afterwards refreshes the kernel-drop count every datagram carries.
    const alive = await until(async () => (await ping(n2.podNs, n1.pod)).code === 0, 10_000);
    t.ok(alive, 'pods still reach each other after the fuzz');
    let a1: UdpCounters = a0;
    let b1: UdpCounters = b0;
    const balanced = await until(async () => {
      a1 = await a.counters();
      b1 = await b.counters();
      const received = a1.udpRxDatagrams - a0.udpRxDatagrams + (a1.udpRxKernelDrops - a0.udpRxKernelDrops);
      return received === sent + (b1.udpTxDatagrams - b0.udpTxDatagrams);
    }, 30_000, 500);
    const rx = a1.udpRxDatagrams - a0.udpRxDatagrams;
    t.ok(balanced, `every datagram was received or dropped by the kernel (rx ${rx}, kernel drops ${a1.udpRxKernelDrops - a0.udpRxKernelDrops}, sent ${sent} + ${b1.udpTxDatagrams - b0.udpTxDatagrams} tunnelled)`);
    const delivered = a1.udpRxDelivered - a0.udpRxDelivered;
    const dropped = sumDrops(a1.dropsInbound) - sumDrops(a0.dropsInbound);
    t.equal(delivered + dropped, rx, 'every received datagram was delivered or dropped with a reason');
    const reasons = Object.fromEntries(Object.entries(a1.dropsInbound).map(([k, v]) => [k, v - (a0.dropsInbound as Record<string, number>)[k]!]).filter(([, v]) => (v as number) > 0));
    t.comment(`delivered ${delivered}, dropped ${JSON.stringify(reasons)}`);
    t.ok(reasons.notPeer! >= o.sent, 'every outsider datagram dropped as notPeer');
    for (const from of [n1, n2, n3]) {
      for (const to of [n1, n2, n3]) {
        if (from !== to) t.equal((await ping(from.podNs, to.pod)).code, 0, `pod ${from.index} -> pod ${to.index} after the fuzz`);
      }
    }
  });

  t.test('a deleted weft0 is recreated on the next sync and traffic resumes', async (t) => {
    await inNs(n2.ns, 'ip', ['link', 'del', 'weft0']);
    t.ok(await until(async () => (await ping(n1.podNs, n2.pod)).code !== 0, 5000), 'the tunnel to node 2 is down');
    t.equal((await b.counters()).tunLost, 1, 'the loop noticed');
    await b.sync(tb.peersOf(n2));
    t.match((await inNs(n2.ns, 'ip', ['-o', 'addr', 'show', 'dev', 'weft0'])).stdout, /10\.250\.2\.0\/32/, 'recreated and reconfigured');
    t.ok(await until(async () => (await ping(n1.podNs, n2.pod)).code === 0, 10_000), 'traffic resumes');
    t.equal((await b.counters()).tunLost, 0, 'the new loop is healthy');
  });

  t.test('restart reuses the device; SIGTERM stops cleanly; teardown removes the device', async (t) => {
    await a.stop(false);
    const link = await inNs(n1.ns, 'ip', ['-o', 'addr', 'show', 'dev', 'weft0']);
    t.match(link.stdout, /10\.250\.1\.0\/32/, 'the device and its address outlive the loop');
    a = await tb.startNode(n1, { kind: 'backend', backend: { Queues: 2 } });
    await a.sync(tb.peersOf(n1));
    t.ok(await until(async () => (await ping(n1.podNs, n2.pod)).code === 0, 10_000), 'traffic resumes after the restart');
    t.ok(await until(async () => (await ping(n3.podNs, n1.pod)).code === 0, 10_000), 'from the simple node too');

    const code = await c.kill();
    t.equal(code, 0, 'SIGTERM: the simple node exits cleanly');
    t.match((await inNs(n3.ns, 'ip', ['-o', 'link', 'show', 'weft0'])).stdout, /weft0/, 'its device persists for the next start');
    c = await tb.startNode(n3, { kind: 'backend', backend: { Mode: 'simple' } });
    await c.sync(tb.peersOf(n3));
    t.ok(await until(async () => (await ping(n3.podNs, n2.pod)).code === 0, 10_000), 'the restarted simple node forwards again');

    await a.stop(true);
    const gone = await inNs(n1.ns, 'ip', ['link', 'show', 'weft0']);
    t.not(gone.code, 0, 'teardown deleted weft0');
    t.notMatch((await inNs(n1.ns, 'ip', ['route'])).stdout, /weft0/, 'and with it the network route');
  });
}

