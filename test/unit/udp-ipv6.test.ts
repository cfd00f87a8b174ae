// The udp loop's IPv6: a dual-stack node's table (each peer's IPv4 subnet at
// its PublicIP, its IPv6 subnet at its PublicIPv6), inbound anti-spoofing
// per family, each packet sent over its peer's underlay family, and the
// ICMPv6 errors the loop writes back. Through the test binding, no root.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { loadUdpAddon, type UdpPeer } from '../../backends/udp/native.js';
import {
  PROTO_ICMPV6, PROTO_UDP,
  concat, icmpEcho, ipPacket, parseIpHeader, tcpPacket, transportChecksumOk, udpDatagram, vnetHeader,
} from '../../backends/udp/packets.js';
import { loadTestAddon } from '../support/native-test-addon.js';

const addon = loadTestAddon();
const PLAIN = vnetHeader({ flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 });

// Node 1 is this node; node 2 a dual-stack peer; node 3 a peer without an IPv6 half.
const PEERS: UdpPeer[] = [
  { subnet: '10.244.2.0/24', publicIP: '192.0.2.2' },
  { subnet: '2001:db8:1000:2::/64', publicIP: '2001:db8::2' },
  { subnet: '10.244.3.0/24', publicIP: '192.0.2.3' },
];
const OWN = ['10.244.1.0/24', '2001:db8:1000:1::/64'];
const A6 = '2001:db8:1000:1::5';
const B6 = '2001:db8:1000:2::7';

function pattern(n: number): Buffer {
  return Buffer.from(Array.from({ length: n }, (_, i) => (i * 7) & 0xff));
}
const udp6 = (src: string, dst: string, o: { ttl?: number; size?: number } = {}) =>
  ipPacket({ src, dst, proto: PROTO_UDP, ...(o.ttl === undefined ? {} : { ttl: o.ttl }) }, udpDatagram(src, dst, 4444, 7777, pattern(o.size ?? 32)));
const ping4 = (src: string, dst: string) => ipPacket({ src, dst, proto: 1 }, icmpEcho(src, dst, 1, 1, pattern(16)));

t.test('inbound, dual-stack: each family only from the peer address of that family, only to this node', async (t) => {
  const table = addon.peerTable(PEERS, OWN, [4, 6]);
  const verdicts = {
    v6FromPublicIPv6: addon.inboundVerdict(table, '2001:db8::2', udp6(B6, A6)),
    v4FromPublicIP: addon.inboundVerdict(table, '192.0.2.2', ping4('10.244.2.9', '10.244.1.5')),
    v6FromThePeersIPv4: addon.inboundVerdict(table, '192.0.2.2', udp6(B6, A6)),
    v4FromThePeersIPv6: addon.inboundVerdict(table, '2001:db8::2', ping4('10.244.2.9', '10.244.1.5')),
    v6SourceOutsideTheSubnet: addon.inboundVerdict(table, '2001:db8::2', udp6('2001:db8:1000:3::7', A6)),
    v6SourceInOurSubnet: addon.inboundVerdict(table, '2001:db8::2', udp6('2001:db8:1000:1::9', A6)),
    v6ToAnotherNode: addon.inboundVerdict(table, '2001:db8::2', udp6(B6, '2001:db8:1000:3::5')),
    v6ToLinkLocal: addon.inboundVerdict(table, '2001:db8::2', udp6(B6, 'fe80::1')),
    v6ToMulticast: addon.inboundVerdict(table, '2001:db8::2', udp6(B6, 'ff02::1')),
    v6FromAStranger: addon.inboundVerdict(table, '2001:db8::99', udp6(B6, A6)),
  };
  t.same(verdicts, {
    v6FromPublicIPv6: 'ok',
    v4FromPublicIP: 'ok',
    v6FromThePeersIPv4: 'spoofedSource', // 192.0.2.2 is a peer, but of IPv4 subnets only...
    v4FromThePeersIPv6: 'spoofedSource', // ...and 2001:db8::2 of IPv6 subnets only
    v6SourceOutsideTheSubnet: 'spoofedSource',
    v6SourceInOurSubnet: 'spoofedSource',
    v6ToAnotherNode: 'destinationNotLocal',
    v6ToLinkLocal: 'destinationNotLocal',
    v6ToMulticast: 'destinationNotLocal',
    v6FromAStranger: 'notPeer',
  });
});

t.test('inbound: a loop without an IPv6 socket leaves IPv6-underlay peers out; a single own subnet owns one family', async (t) => {
  const v4only = addon.peerTable(PEERS, OWN, 4);
  t.equal(addon.inboundVerdict(v4only, '2001:db8::2', udp6(B6, A6)), 'notPeer');
  const ownV4 = addon.peerTable(PEERS, OWN[0]!, [4, 6]);
  t.equal(addon.inboundVerdict(ownV4, '2001:db8::2', udp6(B6, A6)), 'destinationNotLocal', 'no IPv6 subnet of ours');
  t.throws(() => addon.peerTable(PEERS, ['10.244.1.0/24', '10.244.9.0/24'], [4, 6]), /own subnet is not a CIDR, or an array of one CIDR per family/, 'two subnets of one family');
});

t.test('inbound: hostile IPv6 datagrams over the IPv6 underlay always get an inbound verdict', async (t) => {
  const table = addon.peerTable(PEERS, OWN, [4, 6]);
  const seeds = [
    udp6(B6, A6, { size: 200 }),
    tcpPacket({ src: B6, dst: A6, sport: 1, dport: 2, seq: 3 }, pattern(1200)),
    ipPacket({ src: B6, dst: A6, proto: 0 }, Buffer.from([60, 0, 1, 4, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0])), // hop-by-hop, destination options
    ipPacket({ src: B6, dst: A6, proto: 44 }, Buffer.from([17, 0, 0, 8, 0, 0, 0, 1, 1, 2, 3, 4])), // a later fragment
  ];
  const allowed = new Set(['ok', 'short', 'badVersion', 'badLength', 'badHeader', 'notPeer', 'spoofedSource', 'destinationNotLocal']);
  const seen = new Map<string, number>();
  let x = 12345;
  const rnd = (n: number) => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) % n);
  for (let i = 0; i < 50_000; i++) {
    let b: Buffer;
    if (i % 4 === 0) {
      b = randomBytes(rnd(1400));
      b[0] = 0x60 | (b[0]! & 15); // mostly an IPv6 version nibble
    } else {
      b = Buffer.from(seeds[rnd(seeds.length)]!);
      for (let f = 1 + rnd(6); f > 0; f--) b[rnd(Math.min(b.length, 80))] = rnd(256);
      if (rnd(5) === 0) b = b.subarray(0, rnd(b.length));
    }
    const v = addon.inboundVerdict(table, rnd(10) ? '2001:db8::2' : '2001:db8::77', b);
    seen.set(v, (seen.get(v) ?? 0) + 1);
  }
  t.comment(JSON.stringify(Object.fromEntries(seen)));
  t.same([...seen.keys()].filter((v) => !allowed.has(v)), [], 'every verdict is an inbound one');
  t.ok(['ok', 'badLength', 'badHeader', 'notPeer'].every((v) => seen.has(v)), 'accepted, malformed and foreign datagrams among them');
});

t.test('transmit, dual-stack: each packet goes to its peer over the underlay of its own family', async (t) => {
  const table = addon.peerTable(PEERS, OWN, [4, 6]);
  const reads = [ping4('10.244.1.5', '10.244.2.7'), udp6(A6, B6), ping4('10.244.1.5', '10.244.3.4'), udp6(A6, '2001:db8:1000:2::8')];
  const msgs = addon.transmit(table, reads.map((p) => concat([PLAIN, p])), 1400);
  t.same(msgs.map((m) => m.to), ['192.0.2.2', '2001:db8::2', '192.0.2.3', '2001:db8::2']);
  const v6 = msgs[1]!.datagram;
  t.same([parseIpHeader(v6).dst, v6[7]], [B6, 63], 'the IPv6 packet is carried whole, its hop limit decremented');
  t.ok(v6.subarray(8).equals(reads[1]!.subarray(8)), 'and otherwise unchanged');
});

t.test('transmit: ICMPv6 errors written back — no route: Destination Unreachable; hop limit: Time Exceeded', async (t) => {
  const table = addon.peerTable(PEERS, OWN, [4, 6]);
  const noRoute = udp6(A6, '2001:db8:1000:9::1');
  const expiring = udp6(A6, B6, { ttl: 1 });
  const replies: Buffer[] = [];
  const msgs = addon.transmit(table, [noRoute, expiring].map((p) => concat([PLAIN, p])), 1400, replies);
  t.equal(msgs.length, 0, 'neither packet is sent');
  const summary = replies.map((r) => {
    const h = parseIpHeader(r);
    return { src: h.src, dst: h.dst, proto: h.proto, type: r[40], code: r[41], checksumOk: transportChecksumOk(r), lengthOk: h.totalLength === r.length };
  });
  t.same(summary, [
    { src: '2001:db8:1000:9::1', dst: A6, proto: PROTO_ICMPV6, type: 1, code: 0, checksumOk: true, lengthOk: true },
    { src: '2001:db8:1000:2::', dst: A6, proto: PROTO_ICMPV6, type: 3, code: 0, checksumOk: true, lengthOk: true },
  ], 'unreachable from the destination, time exceeded from the peer subnet, checksums over the pseudo-header');
  const about = [noRoute, expiring];
  t.same(replies.map((r, i) => r.subarray(48).equals(about[i]!)), [true, true], 'each quotes the packet it is about');
});

t.test('transmit: an IPv6 packet too big for the tunnel gets Packet Too Big with the MTU, never below 1280', async (t) => {
  const table = addon.peerTable(PEERS, OWN, [4, 6]);
  const big = concat([PLAIN, udp6(A6, B6, { size: 1400 })]);
  const ptb = (mtu: number) => {
    const [m] = addon.transmit(table, [big], mtu);
    const e = m?.tooBig;
    // The quote is of the packet as it was sent (hop limit already decremented).
    return e && { type: e[40], code: e[41], mtu: e.readUInt32BE(44), checksumOk: transportChecksumOk(e), fits: e.length <= 1280, quotes: e.subarray(48).equals(m.datagram.subarray(0, e.length - 48)) };
  };
  t.same(ptb(1372), { type: 2, code: 0, mtu: 1372, checksumOk: true, fits: true, quotes: true });
  t.same(ptb(1000), { type: 2, code: 0, mtu: 1280, checksumOk: true, fits: true, quotes: true }, 'the IPv6 minimum MTU');
  t.same(addon.icmpError(udp6(A6, B6), 'tooBig', 900, '2001:db8:1000:2::')?.readUInt32BE(44), 1280, 'the builder itself never advertises less');
});

t.test('UdpLoop: an IPv6 underlay address beside an IPv4 one only', async (t) => {
  const { UdpLoop } = loadUdpAddon();
  // A bad second address makes the constructor stop before it opens anything.
  const open = (bindAddress: string, bindAddressV6: string) => () => new UdpLoop({ device: 'weft-u6', port: 8285, bindAddress, bindAddressV6 });
  const message = /bindAddressV6 must be an IPv6 address, beside an IPv4 bindAddress/;
  t.throws(open('192.0.2.1', '192.0.2.2'), message, 'not IPv6');
  t.throws(open('2001:db8::1', '2001:db8::2'), message, 'beside an IPv6 bindAddress');
  t.throws(open('192.0.2.1', 'nonsense'), message, 'not an address');
});
