// Writes the fuzz harnesses' hand-made seed corpus (native/fuzz/corpus/) and
// the inputs that reproduce the defects fuzzing found (native/fuzz/regressions/),
// from the packet builders the unit tests use. The files are committed; rerun
// after `npm run build` when a framing changes: node native/fuzz/seeds.mjs
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  PROTO_ICMP, PROTO_UDP, TCP_ACK, TCP_PSH, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4,
  concat, icmpEcho, internetChecksum, ipPacket, pseudoHeader, tcpPacket, tcpSuperpacket, udpDatagram, udpPacket, udpSuperpacket, vnetHeader,
} from '../../dist/backends/udp/packets.js';

const here = dirname(fileURLToPath(import.meta.url));
const A = '10.244.1.5', B = '10.244.2.7', C = '10.244.3.4';
const A6 = 'fd00:1::5', B6 = 'fd00:2::7';
// A peer reached over the IPv6 underlay (2001:db8::3 in common.h).
const C6 = '2001:db8:1000:3::7';
const PLAIN = vnetHeader({ flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 });
const u16 = (n) => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; };
const records = (bufs) => concat(bufs.flatMap((b) => [u16(b.length), b]));
// tun and icmp inputs: a selector byte (1: fix up IPv4 header checksums), then reads.
const reads = (bufs) => concat([Buffer.from([1]), records(bufs)]);
const pattern = (n, salt = 0) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + salt * 13) & 0xff));
const plain = (pkt) => concat([PLAIN, pkt]);
const seg = (o, n) => tcpPacket({ src: B, dst: A, sport: 5201, dport: 40000, flags: TCP_ACK, ...o }, pattern(n, o.seq));

function partialUdp() {
  const udp = udpDatagram(A, B, 53, 5353, pattern(100));
  const pkt = ipPacket({ src: A, dst: B, proto: PROTO_UDP }, udp);
  pkt.writeUInt16BE(~internetChecksum(pseudoHeader(A, B, PROTO_UDP, udp.length)) & 0xffff, 26);
  return (csumStart) => concat([vnetHeader({ flags: VNET_F_NEEDS_CSUM, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart, csumOffset: 6 }), pkt]);
}
const udpPartial = partialUdp();
const headerOnly = tcpSuperpacket({ src: A, dst: B, sport: 40000, dport: 80, seq: 1 }, Buffer.alloc(0), 1400);
const otherPod = plain(tcpPacket({ src: '10.244.1.9', dst: C, sport: 1, dport: 2, seq: 7 }, pattern(600)));
const dg = (o, n) => udpPacket({ src: B, dst: A, sport: 4433, dport: 40000, ...o }, pattern(n, o.id ?? 0));
const badSum = seg({ seq: 1000 }, 1000);
badSum[540] ^= 0x55;
const evil = seg({ seq: 1000 }, 1000); // the reserved fragment bit (RFC 3514) besides DF
evil[6] |= 0x80;
evil.writeUInt16BE(0, 10);
evil.writeUInt16BE(internetChecksum(evil.subarray(0, 20)), 10);

// rtnetlink messages, little-endian as on the machines weft runs on.
const nlAttr = (type, payload) => {
  const b = Buffer.alloc((4 + payload.length + 3) & ~3);
  b.writeUInt16LE(4 + payload.length, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, 4);
  return b;
};
const nlMsg = (type, body) => {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + body.length, 0);
  h.writeUInt16LE(type, 4);
  return concat([h, body]);
};
const le32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
const MAC = Buffer.from([14, 87, 0, 0, 0, 9]);
// RTM_NEWLINK weft.7, RTM_NEWROUTE 10.5.2.0/24 via 192.0.2.2 proto 147, RTM_NEWNEIGH permanent, FDB entry with a remote.
const nlLink = nlMsg(16, concat([Buffer.from([0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]), nlAttr(3, Buffer.from('weft.7\0')), nlAttr(1, MAC)]));
const nlRoute = nlMsg(24, concat([Buffer.from([2, 24, 0, 0, 254, 147, 0, 1, 0, 0, 0, 0]), nlAttr(1, Buffer.from([10, 5, 2, 0])), nlAttr(5, Buffer.from([192, 0, 2, 2])), nlAttr(4, le32(3))]));
const nlNeigh = nlMsg(28, concat([Buffer.from([2, 0, 0, 0, 7, 0, 0, 0, 0x80, 0, 0, 0]), nlAttr(1, Buffer.from([10, 7, 1, 0])), nlAttr(2, MAC)]));
const nlFdb = nlMsg(28, concat([Buffer.from([7, 0, 0, 0, 7, 0, 0, 0, 0xc0, 0, 2, 0]), nlAttr(2, MAC), nlAttr(1, Buffer.from([10, 99, 0, 2]))]));

const seeds = {
  decap: {
    tcp: concat([Buffer.from([0]), u16(0), seg({ seq: 0, src: '10.244.2.9' }, 100)]),
    gro: concat([Buffer.from([4]), u16(1040), seg({ seq: 0 }, 1000), seg({ seq: 1000 }, 1000), seg({ seq: 2000 }, 300)]),
    v6: concat([Buffer.from([4]), u16(0), tcpPacket({ src: B6, dst: A6, sport: 1, dport: 2, seq: 0 }, pattern(200))]),
    'v6-underlay': concat([Buffer.from([5]), u16(0), tcpPacket({ src: C6, dst: A6, sport: 1, dport: 2, seq: 0 }, pattern(200))]),
    'v6-underlay-gro': concat([Buffer.from([5]), u16(1060), ...[0, 1000, 2000].map((seq) => tcpPacket({ src: C6, dst: A6, sport: 1, dport: 2, seq }, pattern(1000, seq)))]),
    'v6-underlay-v4-inner': concat([Buffer.from([5]), u16(0), seg({ seq: 0, src: '10.244.3.9' }, 100)]),
    'v6-spoofed': concat([Buffer.from([5]), u16(0), tcpPacket({ src: B6, dst: A6, sport: 1, dport: 2, seq: 0 }, pattern(50))]),
    'v6-stranger': concat([Buffer.from([7]), u16(0), tcpPacket({ src: C6, dst: A6, sport: 1, dport: 2, seq: 0 }, pattern(50))]),
    echo: concat([Buffer.from([0]), u16(0), ipPacket({ src: B, dst: A, proto: PROTO_ICMP }, icmpEcho(B, A, 1, 1, pattern(56)))]),
    stranger: concat([Buffer.from([2]), u16(0), seg({ seq: 0 }, 100)]),
    'udp-gro': concat([Buffer.from([4]), u16(1028), dg({ id: 1, df: false }, 1000), dg({ id: 2, df: false }, 1000), dg({ id: 3, df: false }, 400)]),
  },
  tun: {
    tso4: reads([tcpSuperpacket({ src: A, dst: B, sport: 40000, dport: 80, seq: 9, flags: TCP_ACK | TCP_PSH }, pattern(5000), 1000), otherPod]),
    tso6: reads([tcpSuperpacket({ src: A6, dst: B6, sport: 40000, dport: 80, seq: 9 }, pattern(3001), 1000)]),
    uso4: reads([udpSuperpacket({ src: A, dst: B, sport: 4433, dport: 443, id: 7 }, pattern(5000), 1200), otherPod]),
    uso6: reads([udpSuperpacket({ src: A6, dst: B6, sport: 4433, dport: 443 }, pattern(3001), 1000)]),
    partial: reads([udpPartial(20)]),
    unreach: reads([plain(tcpPacket({ src: A, dst: '10.9.9.9', sport: 1, dport: 2, seq: 0 }, pattern(10)))]),
    ttl: reads([plain(tcpPacket({ src: A, dst: B, sport: 1, dport: 2, seq: 0, ttl: 1 }, pattern(10)))]),
    'v6-underlay': reads([tcpSuperpacket({ src: A6, dst: C6, sport: 40000, dport: 80, seq: 9 }, pattern(5000), 1000), plain(tcpPacket({ src: A, dst: '10.244.3.4', sport: 1, dport: 2, seq: 7 }, pattern(600)))]),
    'v6-unreach': reads([plain(tcpPacket({ src: A6, dst: 'fd00:9::9', sport: 1, dport: 2, seq: 0 }, pattern(10)))]),
    'v6-hop-limit': reads([plain(tcpPacket({ src: A6, dst: C6, sport: 1, dport: 2, seq: 0, ttl: 1 }, pattern(10)))]),
    'mixed-families': reads([B, B6, C6, '10.244.3.4'].map((dst) => plain(tcpPacket({ src: dst.includes(':') ? A6 : A, dst, sport: 1, dport: 2, seq: 0 }, pattern(300))))),
  },
  coalesce: {
    train: concat([Buffer.from([6]), records([seg({ seq: 0 }, 1000), seg({ seq: 1000 }, 1000), seg({ seq: 2000, flags: TCP_ACK | TCP_PSH }, 1000)])]),
    interleaved: concat([Buffer.from([6]), records([seg({ seq: 0 }, 800), seg({ seq: 0, sport: 6000 }, 800), seg({ seq: 800 }, 800), seg({ seq: 800, sport: 6000 }, 300)])]),
    v6: concat([Buffer.from([6]), records([0, 1, 2].map((i) => tcpPacket({ src: B6, dst: A6, sport: 1, dport: 2, seq: i * 900 }, pattern(900, i))))]),
    refused: concat([Buffer.from([7]), records([seg({ seq: 0 }, 1000), seg({ seq: 1000 }, 1000)])]),
    'udp-train': concat([Buffer.from([6]), records([dg({}, 1000), dg({}, 1000), seg({ seq: 0 }, 1000), dg({}, 1000), dg({}, 300)])]),
    'udp-no-df': concat([Buffer.from([6]), records([dg({ id: 5, df: false }, 900), dg({ id: 6, df: false }, 900), dg({ id: 8, df: false }, 900)])]),
    'udp-v6-refused': concat([Buffer.from([7]), records([0, 1, 2].map((i) => udpPacket({ src: B6, dst: A6, sport: 1, dport: 2 }, pattern(700, i))))]),
  },
  icmp: {
    tso: concat([u16(1400), reads([tcpSuperpacket({ src: A, dst: B, sport: 40000, dport: 80, seq: 9 }, pattern(5000), 1400), otherPod])]),
    v6: concat([u16(1280), reads([tcpSuperpacket({ src: A6, dst: B6, sport: 4, dport: 80, seq: 9 }, pattern(3000), 1400)])]),
    'v6-underlay': concat([u16(1232), reads([tcpSuperpacket({ src: A6, dst: C6, sport: 4, dport: 80, seq: 9 }, pattern(3000), 1400), plain(tcpPacket({ src: A6, dst: C6, sport: 4, dport: 80, seq: 9 }, pattern(1400)))])]),
    'v6-replies': concat([u16(1400), reads([plain(tcpPacket({ src: A6, dst: 'fd00:9::9', sport: 1, dport: 2, seq: 0 }, pattern(1300))), plain(tcpPacket({ src: A6, dst: C6, sport: 1, dport: 2, seq: 0, ttl: 1 }, pattern(10))), plain(tcpPacket({ src: A, dst: '10.9.9.9', sport: 1, dport: 2, seq: 0 }, pattern(10)))])]),
    echo: concat([u16(1000), reads([plain(ipPacket({ src: A, dst: B, proto: PROTO_ICMP }, icmpEcho(A, B, 1, 1, pattern(1200))))])]),
  },
  // netlink inputs: one datagram as the socket returns it (message header, fixed header, attributes).
  netlink: { link: nlLink, route: nlRoute, neigh: nlNeigh, fdb: nlFdb, batch: concat([nlLink, nlRoute, nlNeigh, nlFdb]) },
};

// Each reproduces one defect; the harness's oracle failed on it before the fix.
const regressions = {
  icmp: {
    'header-only-superpacket-quotes-next-pod': concat([u16(1400), reads([headerOnly, otherPod])]),
    'non-df-gets-frag-needed': concat([u16(1000), reads([plain(tcpPacket({ src: A, dst: B, sport: 1, dport: 2, seq: 0, df: false }, pattern(1400)))])]),
  },
  coalesce: {
    'bad-checksum-merged': concat([Buffer.from([0]), records([seg({ seq: 0 }, 1000), badSum, seg({ seq: 2000 }, 1000)])]),
    'reserved-fragment-bit-merged': concat([Buffer.from([0]), records([seg({ seq: 0 }, 1000), evil])]),
    'window-update-lost': concat([Buffer.from([0]), records([seg({ seq: 0, window: 1000 }, 1000), seg({ seq: 1000, window: 3000 }, 1000)])]),
  },
  tun: {
    'csum-start-in-ip-header': reads([udpPartial(10)]),
  },
};

for (const [kind, sets] of [['corpus', seeds], ['regressions', regressions]]) {
  for (const [harness, files] of Object.entries(sets)) {
    const dir = join(here, kind, harness);
    if (kind === 'corpus') rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, name), data);
  }
}
