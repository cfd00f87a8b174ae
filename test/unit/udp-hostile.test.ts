// The udp loop's packet paths on hostile and unusual input: one subtest per
// defect found by fuzzing (see native/fuzz/), each driving the same C code the
// loop runs, through the test binding (UdpLoop's own checks through the product's).
import t from 'tap';
import { loadUdpAddon, type UdpPeer } from '../../backends/udp/native.js';
import {
  PROTO_UDP, TCP_ACK, VNET_F_NEEDS_CSUM, VNET_HDR_LEN,
  concat, internetChecksum, ipPacket, readVnetHeader, tcpPacket, tcpSuperpacket, udpDatagram, vnetHeader,
} from '../../backends/udp/packets.js';
import { loadTestAddon } from '../support/native-test-addon.js';

const addon = loadTestAddon();
const { UdpLoop } = loadUdpAddon();

const PEERS: UdpPeer[] = [
  { subnet: '10.244.2.0/24', publicIP: '192.0.2.2' },
  { subnet: '10.244.3.0/24', publicIP: '192.0.2.3' },
];
const OWN = '10.244.1.0/24';
const A = '10.244.1.5';
const B = '10.244.2.7';
const PLAIN = vnetHeader({ flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 });

function pattern(n: number, salt = 0): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + salt * 13 + (i >> 8)) & 0xff;
  return b;
}

t.test("frag-needed about a header-only superpacket quotes that packet only, not the next pod's", async (t) => {
  const table = addon.peerTable(PEERS, OWN);
  const headerOnly = tcpSuperpacket({ src: A, dst: B, sport: 40000, dport: 80, seq: 1, flags: TCP_ACK }, Buffer.alloc(0), 1400);
  // Another pod's packet, queued right behind it in the same batch.
  const other = concat([PLAIN, tcpPacket({ src: '10.244.1.9', dst: '10.244.3.4', sport: 1, dport: 2, seq: 7 }, Buffer.from('another pod\'s secret '.repeat(30)))]);
  const msgs = addon.transmit(table, [headerOnly, other], 1400);
  const quote = msgs[0]?.tooBig?.subarray(28).toString('hex');
  t.equal(quote, msgs[0]?.datagram.toString('hex'), 'the error quotes exactly the segment it is about');
});

t.test('with inner checksums verified, a segment with a bad TCP checksum is never merged into a packet the kernel trusts', async (t) => {
  // Verification is the loop's verifyInnerChecksums option, off by default:
  // the outer UDP checksum covers the packet in transit (see gso.c).
  const segs = [0, 1, 2].map((i) => tcpPacket({ src: B, dst: A, sport: 5201, dport: 40000, seq: i * 1000 }, pattern(1000, i)));
  segs[1]![40 + 500]! ^= 0x55; // written wrong by the sending peer
  const corrupt = segs[1]!.subarray(40);
  const out = addon.coalesce(segs, { verify: true });
  const carrying = out.filter((b) => b.includes(corrupt));
  t.same(
    carrying.map((b) => ({ flags: readVnetHeader(b).flags, unchanged: b.subarray(VNET_HDR_LEN).equals(segs[1]!) })),
    [{ flags: 0, unchanged: true }],
    'it reaches the TUN device alone, unchanged, for the kernel to verify and drop',
  );
});

t.test('coalescing keeps window updates and other TCP header changes', async (t) => {
  const seg = (seq: number, window: number, flags = TCP_ACK) =>
    tcpPacket({ src: B, dst: A, sport: 5201, dport: 40000, seq, window, flags }, pattern(1000, seq));
  const windowOf = (b: Buffer) => b.readUInt16BE(VNET_HDR_LEN + 20 + 14);
  const flagsOf = (b: Buffer) => b[VNET_HDR_LEN + 20 + 13];
  t.same(addon.coalesce([seg(0, 1000), seg(1000, 3000)]).map(windowOf), [1000, 3000], 'a window update is delivered');
  t.same(addon.coalesce([seg(0, 1000), seg(1000, 1000, TCP_ACK | 0x40)]).map(flagsOf), [TCP_ACK, TCP_ACK | 0x40], 'an ECE change is delivered');
  // The reserved fragment bit beside DF: the merged packet would carry the first segment's field.
  const evil = seg(1000, 1000);
  evil[6]! |= 0x80;
  evil.writeUInt16BE(0, 10);
  evil.writeUInt16BE(internetChecksum(evil.subarray(0, 20)), 10);
  t.same(addon.coalesce([seg(0, 1000), evil]).map((b) => b.readUInt16BE(VNET_HDR_LEN + 6)), [0x4000, 0xc000], 'a segment with another fragment field is delivered as sent');
});

t.test('an oversized IPv4 packet without DF gets no error claiming DF was set', async (t) => {
  const table = addon.peerTable(PEERS, OWN);
  const noDf = concat([PLAIN, tcpPacket({ src: A, dst: B, sport: 40000, dport: 80, seq: 1, df: false }, pattern(1400))]);
  const df = concat([PLAIN, tcpPacket({ src: A, dst: B, sport: 40000, dport: 80, seq: 1 }, pattern(1400))]);
  t.equal(addon.transmit(table, [noDf], 1000)[0]?.tooBig ?? null, null, 'no frag-needed without DF');
  t.equal(addon.icmpError(noDf.subarray(VNET_HDR_LEN), 'tooBig', 1000, '10.244.2.0'), null, 'nor from the ICMP builder itself');
  const err = addon.transmit(table, [df], 1000)[0]?.tooBig;
  t.same(err && [err[20], err[21], err.readUInt16BE(26)], [3, 4, 1000], 'with DF: frag-needed advertising the path MTU');
});

t.test('a partial checksum starting inside the IP header is refused', async (t) => {
  const pkt = ipPacket({ src: A, dst: B, proto: PROTO_UDP }, udpDatagram(A, B, 53, 5353, pattern(100)));
  const vh = vnetHeader({ flags: VNET_F_NEEDS_CSUM, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 10, csumOffset: 6 });
  t.equal(addon.split(concat([vh, pkt])), 'badSuperpacket');
});

t.test('a 15-character interface name, valid on Linux, is accepted', async (t) => {
  // An invalid bind address makes the constructor stop right after the name check.
  const open = (device: string) => () => new UdpLoop({ device, port: 8285, bindAddress: 'not-an-address' });
  t.throws(open('weft-fifteen-ch'), /bindAddress must be an IP address/, '15 characters pass the name check');
  t.throws(open('weft-sixteen-chr'), /device must be an interface name of at most 15 characters/, '16 do not');
});
