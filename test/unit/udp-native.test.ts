// The udp backend's native packet code, exercised through the test binding's
// pure functions (no root, no devices) and checked against plain-JS packets.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import type { UdpPeer } from '../../backends/udp/native.js';
import {
  PROTO_ICMP, PROTO_UDP, TCP_ACK, TCP_CWR, TCP_FIN, TCP_PSH, TCP_SYN,
  VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_HDR_LEN,
  concat, icmpEcho, internetChecksum, ipPacket, parseIpHeader, pseudoHeader, readVnetHeader,
  tcpPacket, tcpSuperpacket, transportChecksumOk, udpDatagram, vnetHeader,
} from '../../backends/udp/packets.js';
import { loadTestAddon } from '../support/native-test-addon.js';

const addon = loadTestAddon();

/** A deterministic generator, so a failing case can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function pattern(n: number, salt = 0): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + salt * 13 + (i >> 8)) & 0xff;
  return b;
}

t.test('checksum: the wide sum agrees with a byte-wise reference', async (t) => {
  const r = rng(1);
  const disagree: string[] = [];
  for (let i = 0; i < 3000; i++) {
    const len = i < 100 ? i : Math.floor(r() * 9000);
    const buf = randomBytes(len);
    if (r() < 0.2) buf.fill(0xff); // carry-heavy input
    if (addon.checksum(buf) !== internetChecksum(buf)) disagree.push(`length ${len}: native ${addon.checksum(buf)} != reference ${internetChecksum(buf)}`);
  }
  t.same(disagree, [], '3000 buffers agree');
  // A buffer carrying its own valid checksum sums to zero.
  const hdr = ipPacket({ src: '10.1.0.1', dst: '10.2.0.1', proto: PROTO_UDP }, Buffer.alloc(0));
  t.equal(addon.checksum(hdr), 0);
});

const A = '10.244.1.5';
const B = '10.244.2.7';
const A6 = 'fd00:1::5';
const B6 = 'fd00:2::7';

/** What every split must keep; each maps to the cases and segments that break it. */
const SEGMENT_BEHAVIOURS = [
  'split returns segments', 'segment count', 'IP length', 'IPv4 header checksum', 'IP ID increments',
  'TCP checksum', 'sequence number', 'FIN/PSH only on the last', 'CWR only on the first',
  'payload bytes', 'full MSS but the last', 'segments carry the whole payload',
] as const;
type SegmentBehaviour = (typeof SEGMENT_BEHAVIOURS)[number];

function checkSegments(broken: (b: SegmentBehaviour, where: string) => void, label: string, segs: Buffer[], original: { payload: Buffer; seq: number; mss: number; flags: number; id: number }): void {
  let off = 0;
  segs.forEach((seg, i) => {
    const where = `${label} segment ${i}`;
    const check = (b: SegmentBehaviour, ok: boolean) => { if (!ok) broken(b, where); };
    const h = parseIpHeader(seg);
    check('IP length', h.totalLength === seg.length);
    if (h.family === 4) {
      check('IPv4 header checksum', internetChecksum(seg.subarray(0, 20)) === 0);
      check('IP ID increments', h.id === ((original.id + i) & 0xffff));
    }
    check('TCP checksum', transportChecksumOk(seg));
    const tcp = seg.subarray(h.headerLength);
    const thl = (tcp[12]! >> 4) * 4;
    check('sequence number', tcp.readUInt32BE(4) === (original.seq + off) >>> 0);
    const last = i === segs.length - 1;
    const flags = tcp[13]!;
    check('FIN/PSH only on the last', (flags & (TCP_FIN | TCP_PSH)) === (last ? original.flags & (TCP_FIN | TCP_PSH) : 0));
    check('CWR only on the first', (flags & TCP_CWR) === (i === 0 ? original.flags & TCP_CWR : 0));
    const body = tcp.subarray(thl);
    check('payload bytes', body.equals(original.payload.subarray(off, off + body.length)));
    check('full MSS but the last', last || body.length === original.mss);
    off += body.length;
  });
  if (off !== original.payload.length) broken('segments carry the whole payload', label);
}

t.test('split: a TSO superpacket becomes wire segments with correct headers and checksums', async (t) => {
  const broken = new Map<SegmentBehaviour, string[]>(SEGMENT_BEHAVIOURS.map((b) => [b, []]));
  const report = (b: SegmentBehaviour, where: string) => broken.get(b)!.push(where);
  for (const [src, dst, family] of [[A, B, 'IPv4'], [A6, B6, 'IPv6']] as const) {
    for (const [size, mss] of [[64000, 1400], [1400 * 5 + 17, 1400], [3001, 1000], [65000, 536]] as const) {
      const label = `${family} ${size}/${mss}`;
      const payload = pattern(size, mss);
      const opts = { src, dst, sport: 40000, dport: 5201, seq: 0xfffff000, ack: 77, flags: TCP_ACK | TCP_PSH | TCP_CWR, id: 0xfffe, options: Buffer.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]) };
      const segs = addon.split(tcpSuperpacket(opts, payload, mss));
      if (!Array.isArray(segs)) {
        report('split returns segments', `${label}: ${segs}`);
        continue;
      }
      if (segs.length !== Math.ceil(size / mss)) report('segment count', `${label}: ${segs.length}`);
      checkSegments(report, label, segs, { payload, seq: opts.seq, mss, flags: opts.flags, id: opts.id });
    }
  }
  // One assertion per behaviour, naming every case and segment that breaks it.
  for (const [behaviour, where] of broken) t.same(where, [], behaviour);
});

t.test('split then coalesce gives back the superpacket byte for byte', async (t) => {
  for (const [src, dst, gsoType] of [[A, B, VNET_GSO_TCPV4], [A6, B6, VNET_GSO_TCPV6]] as const) {
    for (const [size, mss] of [[1400 * 46, 1400], [1400 * 10 + 99, 1400], [2 * 1448 + 1, 1448]] as const) {
      const payload = pattern(size, 3);
      const opts = { src, dst, sport: 1234, dport: 80, seq: 1000, ack: 5, flags: TCP_ACK | TCP_PSH, id: 42, options: Buffer.from([1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 8]) };
      const sp = tcpSuperpacket(opts, payload, mss);
      const segs = addon.split(sp);
      if (!Array.isArray(segs)) {
        t.fail(`split failed: ${segs}`);
        continue;
      }
      const out = addon.coalesce(segs);
      t.equal(out.length, 1, `${size}/${mss}: one superpacket`);
      const vh = readVnetHeader(out[0]!);
      const iphl = src.includes(':') ? 40 : 20;
      t.same(vh, { flags: VNET_F_NEEDS_CSUM, gsoType, hdrLen: iphl + 32, gsoSize: mss, csumStart: iphl, csumOffset: 16 }, 'virtio header');
      t.ok(out[0]!.subarray(VNET_HDR_LEN).equals(sp.subarray(VNET_HDR_LEN)), `${size}/${mss}: packet identical to the original`);
    }
  }
});

t.test('coalesce: only consecutive segments of one flow merge', async (t) => {
  const seg = (o: { sport?: number; seq: number; ack?: number; flags?: number; ttl?: number }, n: number) =>
    tcpPacket({ src: B, dst: A, sport: o.sport ?? 5201, dport: 40000, seq: o.seq, ack: o.ack ?? 1, flags: o.flags ?? TCP_ACK, ...(o.ttl ? { ttl: o.ttl } : {}) }, pattern(n, o.seq));
  const count = (bufs: Buffer[]) => bufs.map((b) => (readVnetHeader(b).gsoType === VNET_GSO_NONE ? 1 : Math.ceil((parseIpHeader(b.subarray(VNET_HDR_LEN)).totalLength - 52) / readVnetHeader(b).gsoSize)));

  // Two interleaved flows: each becomes one superpacket, order within each kept.
  const inter = [seg({ seq: 0 }, 1000), seg({ sport: 6000, seq: 0 }, 1000), seg({ seq: 1000 }, 1000), seg({ sport: 6000, seq: 1000 }, 1000), seg({ seq: 2000 }, 500)];
  let out = addon.coalesce(inter);
  t.same(count(out), [3, 2], 'interleaved flows coalesce separately');

  // A gap in sequence numbers, a changed ack, or a different TTL starts a new packet.
  out = addon.coalesce([seg({ seq: 0 }, 1000), seg({ seq: 1500 }, 1000)]);
  t.same(count(out), [1, 1], 'sequence gap');
  out = addon.coalesce([seg({ seq: 0 }, 1000), seg({ seq: 1000, ack: 9 }, 1000)]);
  t.same(count(out), [1, 1], 'different ack');
  out = addon.coalesce([seg({ seq: 0 }, 1000), seg({ seq: 1000, ttl: 3 }, 1000)]);
  t.same(count(out), [1, 1], 'different TTL');
  // PSH ends a superpacket; a short segment ends it too.
  out = addon.coalesce([seg({ seq: 0 }, 1000), seg({ seq: 1000, flags: TCP_ACK | TCP_PSH }, 1000), seg({ seq: 2000 }, 1000)]);
  t.same(count(out), [2, 1], 'PSH closes');
  out = addon.coalesce([seg({ seq: 0 }, 1000), seg({ seq: 1000 }, 400), seg({ seq: 1400 }, 1000)]);
  t.same(count(out), [2, 1], 'short segment closes');
  // SYN, FIN and non-TCP packets pass alone and flush their flow first.
  const ping = ipPacket({ src: B, dst: A, proto: PROTO_ICMP }, icmpEcho(B, A, 1, 1, pattern(56)));
  out = addon.coalesce([seg({ seq: 0 }, 1000), seg({ seq: 1000 }, 1000), seg({ seq: 2000, flags: TCP_ACK | TCP_FIN }, 10), ping]);
  t.same(count(out), [2, 1, 1], 'FIN flushes, ICMP passes');
  t.ok(out[1]!.subarray(VNET_HDR_LEN).equals(seg({ seq: 2000, flags: TCP_ACK | TCP_FIN }, 10)), 'FIN segment unchanged, after its flow');
  t.ok(out[2]!.subarray(VNET_HDR_LEN).equals(ping), 'ICMP last');
  out = addon.coalesce([seg({ seq: 0, flags: TCP_SYN }, 0), seg({ seq: 1 }, 0)]);
  t.same(count(out), [1, 1], 'no payload, no coalescing');
  // Non-DF IPv4 segments are not merged (the kernel would resegment with DF semantics).
  const nodf = (s: number) => tcpPacket({ src: B, dst: A, sport: 1, dport: 2, seq: s, df: false }, pattern(1000));
  t.same(count(addon.coalesce([nodf(0), nodf(1000)])), [1, 1], 'non-DF');
  // Every single packet is written unchanged, with an all-zero virtio header.
  for (const b of addon.coalesce([ping])) {
    t.same(readVnetHeader(b), { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 });
    t.ok(b.subarray(VNET_HDR_LEN).equals(ping));
  }
});

t.test('coalesce: a kernel refusing GSO writes gets the original segments, in order', async (t) => {
  const segs = [0, 1, 2, 3].map((i) => tcpPacket({ src: B, dst: A, sport: 9, dport: 10, seq: i * 1200 }, pattern(1200, i)));
  const out = addon.coalesce(segs, { refuseGso: true });
  t.equal(out.length, 4);
  out.forEach((b, i) => t.ok(b.subarray(VNET_HDR_LEN).equals(segs[i]!), `segment ${i} unchanged`));
});

t.test('split: non-GSO packets get their partial checksum completed', async (t) => {
  const udp = udpDatagram(A, B, 53, 5353, pattern(333));
  const pkt = ipPacket({ src: A, dst: B, proto: PROTO_UDP }, udp);
  // As the kernel leaves it with TUN_F_CSUM: the pseudo-header sum in the field.
  const partial = Buffer.from(pkt);
  partial.writeUInt16BE(~internetChecksum(pseudoHeader(A, B, PROTO_UDP, udp.length)) & 0xffff, 26);
  const vh = vnetHeader({ flags: VNET_F_NEEDS_CSUM, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 20, csumOffset: 6 });
  const out = addon.split(concat([vh, partial]));
  t.ok(Array.isArray(out) && out.length === 1 && out[0]!.equals(pkt), 'completed UDP checksum equals the full one');
  const plain = addon.split(concat([vnetHeader({ flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 }), pkt]));
  t.ok(Array.isArray(plain) && plain[0]!.equals(pkt), 'a complete packet passes unchanged');
});

t.test('split: malformed superpackets are refused, never crash', async (t) => {
  const good = tcpSuperpacket({ src: A, dst: B, sport: 1, dport: 2, seq: 0 }, pattern(5000), 1000);
  const withVh = (vh: Partial<Parameters<typeof vnetHeader>[0]>) => concat([vnetHeader({ ...readVnetHeader(good), ...vh }), good.subarray(VNET_HDR_LEN)]);
  t.equal(addon.split(withVh({ gsoSize: 0 })), 'badSuperpacket', 'zero gso_size');
  t.equal(addon.split(withVh({ gsoType: VNET_GSO_TCPV6 })), 'badSuperpacket', 'TCPv6 GSO on an IPv4 packet');
  t.equal(addon.split(withVh({ gsoType: 3 })), 'badSuperpacket', 'UFO');
  const udp = ipPacket({ src: A, dst: B, proto: PROTO_UDP }, udpDatagram(A, B, 1, 2, pattern(3000)));
  t.equal(addon.split(concat([vnetHeader({ ...readVnetHeader(good) }), udp])), 'badSuperpacket', 'TSO on UDP');
  t.equal(addon.split(withVh({ flags: 1, gsoType: 0, csumStart: 21, csumOffset: 16 })), 'badSuperpacket', 'odd csum_start');
  t.equal(addon.split(withVh({ flags: 1, gsoType: 0, csumStart: 20, csumOffset: 60000 })), 'badSuperpacket', 'csum_offset past the end');
  const r = rng(7);
  let arrays = 0, badHeaders = 0, neither = 0;
  for (let i = 0; i < 20000; i++) {
    const b = Buffer.from(i % 2 ? good : withVh({ gsoSize: 1 + Math.floor(r() * 3000) }));
    const flips = 1 + Math.floor(r() * 6);
    for (let f = 0; f < flips; f++) b[Math.floor(r() * Math.min(b.length, 120))] = Math.floor(r() * 256);
    const cut = r() < 0.3 ? b.subarray(0, VNET_HDR_LEN + Math.floor(r() * (b.length - VNET_HDR_LEN))) : b;
    const out = addon.split(cut);
    if (Array.isArray(out)) {
      arrays++;
      if (out.some((s) => s[0]! >> 4 === 4 && internetChecksum(s.subarray(0, (s[0]! & 15) * 4)) !== 0)) badHeaders++;
    } else if (typeof out !== 'string') {
      neither++;
    }
  }
  t.comment(`${arrays} of 20000 mutated superpackets still split`);
  t.equal(badHeaders, 0, 'no segment of a mutated superpacket has a bad IPv4 header checksum');
  t.equal(neither, 0, 'split always returns segments or a reason');
});

const PEERS: UdpPeer[] = [
  { subnet: '10.244.2.0/24', publicIP: '192.0.2.2' },
  { subnet: '10.244.3.0/24', publicIP: '192.0.2.3' },
  { subnet: '10.244.16.0/20', publicIP: '192.0.2.16' },
];
const OWN = '10.244.1.0/24';

t.test('inbound validation: only peers, only their subnets, only to us', async (t) => {
  const table = addon.peerTable(PEERS, OWN);
  const pkt = (src: string, dst: string) => ipPacket({ src, dst, proto: PROTO_ICMP }, icmpEcho(src, dst, 1, 1, pattern(32)));
  t.equal(addon.inboundVerdict(table, '192.0.2.2', pkt('10.244.2.9', '10.244.1.5')), 'ok');
  t.equal(addon.inboundVerdict(table, '192.0.2.16', pkt('10.244.31.9', '10.244.1.5')), 'ok', 'wider peer subnet');
  t.equal(addon.inboundVerdict(table, '192.0.2.99', pkt('10.244.2.9', '10.244.1.5')), 'notPeer');
  t.equal(addon.inboundVerdict(table, '192.0.2.3', pkt('10.244.2.9', '10.244.1.5')), 'spoofedSource', "another peer's subnet");
  t.equal(addon.inboundVerdict(table, '192.0.2.2', pkt('10.9.9.9', '10.244.1.5')), 'spoofedSource', 'outside every subnet');
  t.equal(addon.inboundVerdict(table, '192.0.2.2', pkt('10.244.1.7', '10.244.1.5')), 'spoofedSource', 'our own subnet as source');
  t.equal(addon.inboundVerdict(table, '192.0.2.2', pkt('10.244.2.9', '10.244.3.5')), 'destinationNotLocal');
  t.equal(addon.inboundVerdict(table, '192.0.2.2', pkt('10.244.2.9', '8.8.8.8')), 'destinationNotLocal');
  const good = pkt('10.244.2.9', '10.244.1.5');
  t.equal(addon.inboundVerdict(table, '192.0.2.2', Buffer.alloc(0)), 'short');
  t.equal(addon.inboundVerdict(table, '192.0.2.2', good.subarray(0, 19)), 'short');
  t.equal(addon.inboundVerdict(table, '192.0.2.2', good.subarray(0, 30)), 'badLength', 'truncated');
  t.equal(addon.inboundVerdict(table, '192.0.2.2', concat([good, Buffer.alloc(3)])), 'badLength', 'trailing bytes');
  const v = Buffer.from(good);
  v[0] = 0x55;
  t.equal(addon.inboundVerdict(table, '192.0.2.2', v), 'badVersion');
  const ihl = Buffer.from(good);
  ihl[0] = 0x44;
  t.equal(addon.inboundVerdict(table, '192.0.2.2', ihl), 'badHeader', 'IHL below 5');
  const sum = Buffer.from(good);
  sum[10]! ^= 0xff;
  t.equal(addon.inboundVerdict(table, '192.0.2.2', sum), 'badHeader', 'header checksum');
  const empty = addon.peerTable([], null);
  t.equal(addon.inboundVerdict(empty, '192.0.2.2', good), 'notPeer', 'empty table');
  const noOwn = addon.peerTable(PEERS, null);
  t.equal(addon.inboundVerdict(noOwn, '192.0.2.2', good), 'destinationNotLocal', 'own subnet unknown');
});

t.test('inbound validation: addresses this node borrows are its own, a peer\'s borrowed address is a source from that peer only', async (t) => {
  // This node borrows 10.244.3.50 and fd00:3::50 (pods pinned there from peer 3's subnets); peer 2 borrows 10.244.3.60.
  const peers: UdpPeer[] = [...PEERS, { subnet: 'fd00:2::/64', publicIP: '192.0.2.2' }, { subnet: 'fd00:3::/64', publicIP: '192.0.2.3' }, { subnet: '10.244.3.60/32', publicIP: '192.0.2.2' }];
  const table = addon.peerTable(peers, [OWN, 'fd00:1::/64'], 4, ['10.244.3.50/32', 'fd00:3::50/128']);
  const ping = (src: string, dst: string) => ipPacket({ src, dst, proto: PROTO_ICMP }, icmpEcho(src, dst, 1, 1, pattern(32)));
  const udp6 = (src: string, dst: string) => ipPacket({ src, dst, proto: PROTO_UDP }, udpDatagram(src, dst, 1, 2, pattern(20)));
  const verdicts = {
    toBorrowed: addon.inboundVerdict(table, '192.0.2.2', ping('10.244.2.9', '10.244.3.50')),
    toBorrowedV6: addon.inboundVerdict(table, '192.0.2.2', udp6(B6, 'fd00:3::50')),
    toOwnSubnet: addon.inboundVerdict(table, '192.0.2.2', ping('10.244.2.9', '10.244.1.5')),
    toLenderNeighbour: addon.inboundVerdict(table, '192.0.2.2', ping('10.244.2.9', '10.244.3.51')),
    toLenderNeighbourV6: addon.inboundVerdict(table, '192.0.2.2', udp6(B6, 'fd00:3::51')),
    fromPeerBorrowedByItsHolder: addon.inboundVerdict(table, '192.0.2.2', ping('10.244.3.60', '10.244.1.5')),
    fromPeerBorrowedByItsLender: addon.inboundVerdict(table, '192.0.2.3', ping('10.244.3.60', '10.244.1.5')),
    fromLenderSubnet: addon.inboundVerdict(table, '192.0.2.3', ping('10.244.3.61', '10.244.1.5')),
  };
  t.same(verdicts, {
    toBorrowed: 'ok',
    toBorrowedV6: 'ok',
    toOwnSubnet: 'ok',
    toLenderNeighbour: 'destinationNotLocal',
    toLenderNeighbourV6: 'destinationNotLocal',
    fromPeerBorrowedByItsHolder: 'ok',
    fromPeerBorrowedByItsLender: 'spoofedSource',
    fromLenderSubnet: 'ok',
  });
});

t.test('inbound validation: the loop takes at most 128 borrowed addresses, as a lease holds', async (t) => {
  const many = Array.from({ length: 130 }, (_, i) => `10.244.${100 + (i >> 6)}.${i & 63}/32`);
  const table = addon.peerTable(PEERS, OWN, 4, many);
  const ping = (dst: string) => ipPacket({ src: '10.244.2.9', dst, proto: PROTO_ICMP }, icmpEcho('10.244.2.9', dst, 1, 1, pattern(8)));
  const verdicts = [127, 128].map((i) => addon.inboundVerdict(table, '192.0.2.2', ping(many[i]!.replace('/32', ''))));
  t.same(verdicts, ['ok', 'destinationNotLocal'], 'the 128th is held, the 129th left out');
  t.throws(() => addon.peerTable(PEERS, OWN, 4, ['10.244.3.50']), /borrowed addresses are not an array of CIDRs/, 'an address without a prefix length');
});

t.test('inbound validation: IPv6 inner packets and extension headers', async (t) => {
  const table = addon.peerTable([{ subnet: 'fd00:2::/64', publicIP: '192.0.2.2' }], 'fd00:1::/64');
  const pkt = ipPacket({ src: B6, dst: A6, proto: PROTO_UDP }, udpDatagram(B6, A6, 1, 2, pattern(20)));
  t.equal(addon.inboundVerdict(table, '192.0.2.2', pkt), 'ok');
  t.equal(addon.inboundVerdict(table, '192.0.2.2', pkt.subarray(0, 39)), 'short');
  t.equal(addon.inboundVerdict(table, '192.0.2.2', pkt.subarray(0, 50)), 'badLength');
  // A hop-by-hop header claiming more bytes than there are.
  const hbh = ipPacket({ src: B6, dst: A6, proto: 0 }, Buffer.from([17, 200, 0, 0, 0, 0, 0, 0]));
  t.equal(addon.inboundVerdict(table, '192.0.2.2', hbh), 'badHeader');
  // Nine chained destination-options headers: longer than the loop walks.
  const chain = concat(Array.from({ length: 9 }, () => Buffer.from([60, 0, 0, 0, 0, 0, 0, 0])));
  const long = ipPacket({ src: B6, dst: A6, proto: 60 }, chain);
  t.equal(addon.inboundVerdict(table, '192.0.2.2', long), 'badHeader');
});

t.test('inbound validation over an IPv6 underlay', async (t) => {
  const table = addon.peerTable([{ subnet: '10.244.2.0/24', publicIP: '2001:db8::2' }, { subnet: '10.244.3.0/24', publicIP: '192.0.2.3' }], OWN, 6);
  const pkt = ipPacket({ src: '10.244.2.9', dst: '10.244.1.5', proto: PROTO_ICMP }, icmpEcho('10.244.2.9', '10.244.1.5', 1, 1, pattern(8)));
  t.equal(addon.inboundVerdict(table, '2001:db8::2', pkt), 'ok');
  t.equal(addon.inboundVerdict(table, '2001:db8::3', pkt), 'notPeer');
  t.equal(addon.inboundVerdict(table, '192.0.2.3', pkt), 'notPeer', 'an IPv4 peer is left out of an IPv6 tunnel');
});

t.test('inbound validation: 100,000 hostile datagrams never crash and always get a verdict', async (t) => {
  const table = addon.peerTable(PEERS, OWN);
  const seeds = [
    ipPacket({ src: '10.244.2.9', dst: '10.244.1.5', proto: PROTO_ICMP }, icmpEcho('10.244.2.9', '10.244.1.5', 1, 1, pattern(56))),
    tcpPacket({ src: '10.244.2.9', dst: '10.244.1.5', sport: 1, dport: 2, seq: 3 }, pattern(1400)),
    ipPacket({ src: 'fd00:2::1', dst: 'fd00:1::1', proto: 44 }, Buffer.from([17, 0, 0, 8, 0, 0, 0, 1, 1, 2, 3, 4])),
  ];
  const verdicts = new Map<string, number>();
  const r = rng(99);
  for (let i = 0; i < 100000; i++) {
    let b: Buffer;
    const kind = r();
    if (kind < 0.3) {
      b = randomBytes(Math.floor(r() * 1600));
    } else {
      b = Buffer.from(seeds[Math.floor(r() * seeds.length)]!);
      const flips = 1 + Math.floor(r() * 8);
      for (let f = 0; f < flips; f++) b[Math.floor(r() * Math.min(b.length, 64))] = Math.floor(r() * 256);
      if (r() < 0.2) b = b.subarray(0, Math.floor(r() * b.length));
    }
    const from = r() < 0.9 ? '192.0.2.2' : '192.0.2.77';
    const v = addon.inboundVerdict(table, from, b);
    verdicts.set(v, (verdicts.get(v) ?? 0) + 1);
  }
  const allowed = new Set(['ok', 'short', 'badVersion', 'badLength', 'badHeader', 'notPeer', 'spoofedSource', 'destinationNotLocal']);
  for (const v of verdicts.keys()) t.ok(allowed.has(v), `verdict ${v} is an inbound verdict`);
  t.ok((verdicts.get('notPeer') ?? 0) > 0 && (verdicts.get('badHeader') ?? 0) > 0, 'several reasons seen');
  t.comment(JSON.stringify(Object.fromEntries(verdicts)));
});

t.test('ICMP errors are well formed and only sent when allowed', async (t) => {
  const v4 = tcpPacket({ src: A, dst: B, sport: 40000, dport: 80, seq: 123 }, pattern(1400));
  for (const [kind, type, code] of [['unreachable', 3, 0], ['timeExceeded', 11, 0], ['tooBig', 3, 4]] as const) {
    const out = addon.icmpError(v4, kind, 1372, '10.244.2.0');
    t.ok(out, kind);
    if (!out) continue;
    const h = parseIpHeader(out);
    t.same([h.src, h.dst, h.proto, h.totalLength], ['10.244.2.0', A, PROTO_ICMP, out.length], `${kind}: addresses and length`);
    t.equal(internetChecksum(out.subarray(0, 20)), 0, `${kind}: IP header checksum`);
    t.ok(transportChecksumOk(out), `${kind}: ICMP checksum`);
    t.same([out[20], out[21]], [type, code], `${kind}: type and code`);
    if (kind === 'tooBig') t.equal(out.readUInt16BE(26), 1372, 'next-hop MTU');
    t.ok(out.length <= 576, 'fits in 576 bytes');
    t.ok(out.subarray(28).equals(v4.subarray(0, out.length - 28)), `${kind}: quotes the offending packet`);
  }
  const v6 = tcpPacket({ src: A6, dst: B6, sport: 40000, dport: 80, seq: 123 }, pattern(1400));
  for (const [kind, type] of [['unreachable', 1], ['timeExceeded', 3], ['tooBig', 2]] as const) {
    const out = addon.icmpError(v6, kind, 1400, 'fd00:2::');
    t.ok(out, `v6 ${kind}`);
    if (!out) continue;
    const h = parseIpHeader(out);
    t.same([h.src, h.dst, h.proto], ['fd00:2::', A6, 58], `v6 ${kind}: header`);
    t.ok(out.length <= 1280, 'fits in the IPv6 minimum MTU');
    t.ok(transportChecksumOk(out), `v6 ${kind}: ICMPv6 checksum`);
    t.equal(out[40], type, `v6 ${kind}: type`);
    if (kind === 'tooBig') t.equal(out.readUInt32BE(44), 1400, 'MTU');
  }
  // Never about an ICMP error, a later fragment, or multicast/broadcast.
  const err = addon.icmpError(v4, 'unreachable', 0, '10.244.2.0')!;
  t.equal(addon.icmpError(err, 'unreachable', 0, '10.244.9.9'), null, 'not about an ICMP error');
  const echo = ipPacket({ src: A, dst: B, proto: PROTO_ICMP }, icmpEcho(A, B, 1, 1, pattern(8)));
  t.ok(addon.icmpError(echo, 'unreachable', 0, B), 'about an echo request');
  const frag = ipPacket({ src: A, dst: B, proto: PROTO_UDP, fragOffset: 100 }, pattern(100));
  t.equal(addon.icmpError(frag, 'unreachable', 0, B), null, 'not about a later fragment');
  const first = ipPacket({ src: A, dst: B, proto: PROTO_UDP, mf: true }, pattern(100));
  t.ok(addon.icmpError(first, 'unreachable', 0, B), 'about a first fragment');
  const mcast = ipPacket({ src: A, dst: '239.1.1.1', proto: PROTO_UDP }, udpDatagram(A, '239.1.1.1', 1, 2, pattern(8)));
  t.equal(addon.icmpError(mcast, 'unreachable', 0, B), null, 'not about multicast');
  const bcast = ipPacket({ src: A, dst: '255.255.255.255', proto: PROTO_UDP }, udpDatagram(A, '255.255.255.255', 1, 2, pattern(8)));
  t.equal(addon.icmpError(bcast, 'unreachable', 0, B), null, 'not about broadcast');
  const v6err = addon.icmpError(v6, 'unreachable', 0, 'fd00:2::')!;
  t.equal(addon.icmpError(v6err, 'unreachable', 0, 'fd00:9::1'), null, 'not about an ICMPv6 error');
  const v6frag = ipPacket({ src: A6, dst: B6, proto: 44 }, Buffer.from([17, 0, 0, 0x10, 0, 0, 0, 1, 1, 2, 3, 4]));
  t.equal(addon.icmpError(v6frag, 'unreachable', 0, B6), null, 'not about a later IPv6 fragment');
});

t.test('peer table swaps under concurrent lookups never expose a freed or mixed table', async (t) => {
  const harness = new addon.PeerSwapHarness(4);
  const r = rng(5);
  const swaps = 3000;
  for (let gen = 0; gen < swaps; gen++) {
    const n = 1 + Math.floor(r() * 300);
    const publicIP = `192.0.2.${(gen % 250) + 1}`;
    const peers: UdpPeer[] = [];
    for (let i = 0; i < n; i++) peers.push({ subnet: `10.${(i >> 8) + 100}.${i & 255}.0/24`, publicIP });
    if (gen % 50 === 0) peers.push({ subnet: '10.200.0.0/16', publicIP }); // a second prefix length
    harness.setPeers(peers, '10.99.0.0/24');
    if (gen % 100 === 0) await new Promise((res) => setImmediate(res));
  }
  const stats = harness.stop();
  t.comment(JSON.stringify(stats));
  t.equal(stats.inconsistent, 0, 'no reader saw a freed or mixed table');
  t.ok(stats.lookups > 0, 'readers looked up');
  t.equal(stats.published, swaps);
  t.equal(stats.retiredLeft, 0, 'nothing left to free once readers are gone');
  t.equal(stats.freed, swaps - 1, 'every replaced table was freed');
});

t.test('setPeers input errors name the bad entry', async (t) => {
  t.throws(() => addon.peerTable([{ subnet: '10.1.0.0', publicIP: '192.0.2.1' }], null), /peer 0: subnet is not a CIDR/);
  t.throws(() => addon.peerTable([{ subnet: '10.1.0.0/24', publicIP: 'x' }], null), /peer 0: publicIP/);
  t.throws(() => addon.peerTable([PEERS[0]!, {} as UdpPeer], null), /peer 1/);
  t.throws(() => addon.peerTable(PEERS, '10.1.0.0/40'), /own subnet/);
});
