// The udp backend dual-stack: two nodes in network namespaces with IPv4 and
// IPv6 on the underlay and on the pods; IPv4 pod subnets go over the IPv4
// underlay, IPv6 ones over the IPv6 underlay, both through one weft0. Then
// the same two nodes IPv6 only. One testbed, probes in parallel.
import t from 'tap';
import { UdpTestbed, inNs, NETWORK6, type TestbedNode } from '../support/udp-testbed.js';
import { PROTO_UDP, ipPacket, udpDatagram } from '../../backends/udp/packets.js';
import { until } from './support/lab-fixture.js';

const PREFIX = 'u6ds';

if (process.getuid?.() !== 0) {
  t.fail('the udp e2e tests need root (network namespaces, TUN devices); run them as root');
} else {
  const tb = await UdpTestbed.create({ prefix: PREFIX, nodes: 2, ipv6: true });
  t.teardown(() => tb.destroy());
  const [n1, n2] = tb.nodes as [TestbedNode, TestbedNode];
  // One fast node with two queues, one simple: both worker shapes carry both families.
  let [a, b] = await Promise.all([
    tb.startNode(n1, { kind: 'backend', stack: 'dual', backend: { Queues: 2 } }),
    tb.startNode(n2, { kind: 'backend', stack: 'dual', backend: { Mode: 'simple' } }),
  ]);
  await Promise.all([a.sync(tb.peersOf(n1)), b.sync(tb.peersOf(n2))]);

  const ping = (fromNs: string, dst: string, ...args: string[]) => inNs(fromNs, 'ping', ['-n', '-c', '1', '-W', '2', ...args, dst], 30_000);
  const reaches = (fromNs: string, dst: string): Promise<boolean> =>
    until(`${fromNs} to reach ${dst}`, async () => (await ping(fromNs, dst)).code === 0, 10_000).then(() => true, () => false);

  t.test('weft0 holds both subnet addresses, both Networks route through it, MTU for the IPv6 underlay', async (t) => {
    const [link, addrs, routes6] = await Promise.all([
      inNs(n1.ns, 'ip', ['-o', 'link', 'show', 'weft0']),
      inNs(n1.ns, 'ip', ['-o', 'addr', 'show', 'dev', 'weft0']),
      inNs(n1.ns, 'ip', ['-6', 'route', 'show', 'dev', 'weft0']),
    ]);
    t.match(link.stdout, /mtu 1452/, 'underlay MTU minus 48, the IPv6 headers');
    t.match(addrs.stdout, /inet 10\.250\.1\.0\/32/);
    t.match(addrs.stdout, /inet6 2001:db8:1000:1::\/128/);
    t.match(routes6.stdout, new RegExp(`^${NETWORK6.replace(/[.:/]/g, '\\$&')} `, 'm'));
  });

  t.test('pods reach each other in both families, each over its own underlay', async (t) => {
    const before = await a.counters();
    const pairs = [[n1, n2], [n2, n1]] as const;
    const results = await Promise.all(pairs.flatMap(([from, to]) => [
      reaches(from.podNs, to.pod).then((ok) => [`${from.index} -> ${to.index} IPv4`, ok] as const),
      reaches(from.podNs, to.pod6).then((ok) => [`${from.index} -> ${to.index} IPv6`, ok] as const),
    ]));
    t.same(results.filter(([, ok]) => !ok).map(([what]) => what), [], 'every pair, both families');
    // Captured on node 2's underlay: the IPv6 pod traffic travels in IPv6 datagrams to port 8285.
    const dump = inNs(n2.ns, 'tcpdump', ['-n', '-c', '1', '-i', n2.dev, 'ip6 and udp dst port 8285 and src', n1.underlay6], 15_000);
    await new Promise((r) => setTimeout(r, 500)); // tcpdump's start-up
    await inNs(n1.podNs, 'ping', ['-n', '-c', '3', '-i', '0.5', '-W', '1', n2.pod6], 30_000);
    t.match((await dump).stdout, new RegExp(`${n1.underlay6.replace(/:/g, '\\:')}\\.\\d+ > ${n2.underlay6.replace(/:/g, '\\:')}\\.8285: UDP`), 'an IPv6 datagram from underlay to underlay');
    const after = await a.counters();
    t.equal(after.dropsInbound.spoofedSource + after.dropsInbound.destinationNotLocal - before.dropsInbound.spoofedSource - before.dropsInbound.destinationNotLocal, 0, 'no legitimate packet dropped');
  });

  t.test('TCP over IPv6: superpackets split and coalesced', async (t) => {
    const server = inNs(n2.podNs, 'iperf3', ['-s', '-1', '-p', '5201'], 60_000);
    await until('iperf3 to listen', async () => (await inNs(n2.podNs, 'ss', ['-ltn', 'sport = :5201'])).stdout.includes('5201'), 5000);
    const r = await inNs(n1.podNs, 'iperf3', ['-6', '-c', n2.pod6, '-p', '5201', '-n', '8M', '-J'], 60_000);
    await server;
    const bps = (JSON.parse(r.stdout || '{}') as { end?: { sum_received?: { bits_per_second?: number } } }).end?.sum_received?.bits_per_second ?? 0;
    t.ok(r.code === 0 && bps > 0, `8 MB over IPv6 (${(bps / 1e6).toFixed(0)} Mbit/s)`);
  });

  t.test('ICMPv6: unreachable without a peer, time exceeded on hop limit, packet too big with the path MTU', async (t) => {
    await inNs(n1.ns, 'ip', ['-6', 'route', 'replace', `${n2.underlay6}/128`, 'dev', n1.dev, 'mtu', '1400']);
    t.teardown(async () => {
      await inNs(n1.ns, 'ip', ['-6', 'route', 'del', `${n2.underlay6}/128`, 'dev', n1.dev]);
      await inNs(n1.podNs, 'ip', ['-6', 'route', 'flush', 'cache']);
    });
    const [unreach, expired, big] = await Promise.all([
      ping(n1.podNs, '2001:db8:1000:9::5'),
      ping(n1.podNs, n2.pod6, '-t', '2'),
      inNs(n1.podNs, 'ping', ['-n', '-c', '2', '-i', '0.3', '-W', '1', '-M', 'do', '-s', '1400', n2.pod6], 30_000),
    ]);
    t.match(unreach.stdout, /From 2001:db8:1000:9::5 .*Destination unreachable: No route/i, 'from the destination');
    t.match(expired.stdout, /From 2001:db8:1000:2:: .*Time exceeded: Hop limit/i, 'from the tunnel end');
    t.match(big.stdout + big.stderr, /mtu ?= ?1352/, 'the pod learns MTU 1352 (1400 - 48)');
    const k = await a.counters();
    t.ok(k.icmpUnreachable > 0 && k.icmpTimeExceeded > 0 && k.icmpTooBig > 0, 'each counted');
  });

  t.test("an inner IPv6 source outside the sending peer's subnet, or over the peer's IPv4 underlay, is dropped", async (t) => {
    const probe = (src: string) => ipPacket({ src, dst: n1.pod6, proto: PROTO_UDP }, udpDatagram(src, n1.pod6, 4444, 7777, Buffer.from('weft-probe')));
    const before = await a.counters();
    await tb.fuzz(n2.ns, n2.underlay6, n1.underlay6, [probe('2001:db8:1000:7::1'), probe(n1.pod6)]);
    await tb.fuzz(n2.ns, n2.underlay, n1.underlay, [probe(n2.pod6)]);
    await tb.fuzz(tb.switchNs, tb.outsider6, n1.underlay6, [probe(n2.pod6)]);
    let after = before;
    await until('the four datagrams to be counted', async () => {
      after = await a.counters();
      return after.udpRxDatagrams - before.udpRxDatagrams >= 4;
    }, 5000).catch(() => undefined); // the counts below say what arrived
    t.same(
      { spoofedSource: after.dropsInbound.spoofedSource - before.dropsInbound.spoofedSource, notPeer: after.dropsInbound.notPeer - before.dropsInbound.notPeer },
      { spoofedSource: 3, notPeer: 1 },
    );
  });

  t.test('IPv6 only: the same nodes with IPv6 leases over the IPv6 underlay', async (t) => {
    await Promise.all([a.stop(true), b.stop(true)]);
    [a, b] = await Promise.all([
      tb.startNode(n1, { kind: 'backend', stack: 'ipv6', backend: { Queues: 2 } }),
      tb.startNode(n2, { kind: 'backend', stack: 'ipv6' }),
    ]);
    await Promise.all([a.sync(tb.peersOf(n1)), b.sync(tb.peersOf(n2))]);
    const [there, back] = await Promise.all([reaches(n1.podNs, n2.pod6), reaches(n2.podNs, n1.pod6)]);
    t.same([there, back], [true, true], 'both ways');
    const addrs = await inNs(n1.ns, 'ip', ['-o', 'addr', 'show', 'dev', 'weft0']);
    t.notMatch(addrs.stdout, /inet 10\./, 'weft0 holds no IPv4 subnet address');
  });
}
