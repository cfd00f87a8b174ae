// IP/TCP/UDP/ICMP packets built in plain JS, independent of the native code:
// the tests and the fuzzer check the addon against these.
import { endianness } from 'node:os';
import { IP } from '../../src/core/cidr.js';

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMPV6 = 58;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_CWR = 0x80;

/** RFC 1071 over the concatenation of `parts`, byte by byte; returns the checksum field value. */
export function internetChecksum(...parts: Buffer[]): number {
  let sum = 0;
  let odd = false;
  for (const p of parts) {
    for (const byte of p) {
      sum += odd ? byte : byte << 8;
      odd = !odd;
    }
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Copies `bytes` into `target` at `offset`. */
function place(target: Buffer, bytes: Buffer, offset: number): void {
  for (let i = 0; i < bytes.length; i++) target[offset + i] = bytes[i]!;
}

/** Buffer.concat, without @types/node 20's Uint8Array mismatch under TS 5.9. */
export function concat(parts: readonly Buffer[]): Buffer {
  const out = Buffer.alloc(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    place(out, p, off);
    off += p.length;
  }
  return out;
}

function addrBytes(text: string): Buffer {
  return Buffer.from(IP.parse(text).toBytes());
}

/** The TCP/UDP/ICMPv6 pseudo-header. */
export function pseudoHeader(src: string, dst: string, proto: number, length: number): Buffer {
  const s = addrBytes(src);
  const d = addrBytes(dst);
  if (s.length === 4) {
    const b = Buffer.alloc(12);
    place(b, s, 0);
    place(b, d, 4);
    b[9] = proto;
    b.writeUInt16BE(length, 10);
    return b;
  }
  const b = Buffer.alloc(40);
  place(b, s, 0);
  place(b, d, 16);
  b.writeUInt32BE(length, 32);
  b[39] = proto;
  return b;
}

export interface IpHeaderOptions {
  src: string;
  dst: string;
  proto: number;
  ttl?: number;
  /** IPv4 only */
  id?: number;
  df?: boolean;
  mf?: boolean;
  fragOffset?: number;
  tos?: number;
}

/** An IPv4 or IPv6 packet (by the family of `src`) around `payload`. */
export function ipPacket(o: IpHeaderOptions, payload: Buffer): Buffer {
  const s = addrBytes(o.src);
  const d = addrBytes(o.dst);
  if (s.length === 4) {
    const h = Buffer.alloc(20);
    h[0] = 0x45;
    h[1] = o.tos ?? 0;
    h.writeUInt16BE(20 + payload.length, 2);
    h.writeUInt16BE(o.id ?? 0, 4);
    h.writeUInt16BE((o.df === false ? 0 : 0x4000) | (o.mf ? 0x2000 : 0) | ((o.fragOffset ?? 0) & 0x1fff), 6);
    h[8] = o.ttl ?? 64;
    h[9] = o.proto;
    place(h, s, 12);
    place(h, d, 16);
    h.writeUInt16BE(internetChecksum(h), 10);
    return concat([h, payload]);
  }
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000 | ((o.tos ?? 0) << 20), 0);
  h.writeUInt16BE(payload.length, 4);
  h[6] = o.proto;
  h[7] = o.ttl ?? 64;
  place(h, s, 8);
  place(h, d, 24);
  return concat([h, payload]);
}

export interface TcpOptions {
  sport: number;
  dport: number;
  seq: number;
  ack?: number;
  flags?: number;
  window?: number;
  /** Raw option bytes, padded to 4 by the caller. */
  options?: Buffer;
}

/** A TCP segment with its checksum over the pseudo-header of src/dst. */
export function tcpSegment(src: string, dst: string, o: TcpOptions, payload: Buffer): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const h = Buffer.alloc(20 + opts.length);
  h.writeUInt16BE(o.sport, 0);
  h.writeUInt16BE(o.dport, 2);
  h.writeUInt32BE(o.seq >>> 0, 4);
  h.writeUInt32BE((o.ack ?? 0) >>> 0, 8);
  h[12] = (h.length / 4) << 4;
  h[13] = o.flags ?? TCP_ACK;
  h.writeUInt16BE(o.window ?? 65535, 14);
  place(h, opts, 20);
  const seg = concat([h, payload]);
  seg.writeUInt16BE(internetChecksum(pseudoHeader(src, dst, PROTO_TCP, seg.length), seg), 16);
  return seg;
}

export function udpDatagram(src: string, dst: string, sport: number, dport: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  const d = concat([h, payload]);
  const c = internetChecksum(pseudoHeader(src, dst, PROTO_UDP, d.length), d);
  d.writeUInt16BE(c === 0 ? 0xffff : c, 6);
  return d;
}

/** ICMP (or ICMPv6 when src is IPv6) echo request. */
export function icmpEcho(src: string, dst: string, id: number, seq: number, payload: Buffer): Buffer {
  const v6 = addrBytes(src).length === 16;
  const h = Buffer.alloc(8);
  h[0] = v6 ? 128 : 8;
  h.writeUInt16BE(id, 4);
  h.writeUInt16BE(seq, 6);
  const m = concat([h, payload]);
  const c = v6 ? internetChecksum(pseudoHeader(src, dst, PROTO_ICMPV6, m.length), m) : internetChecksum(m);
  m.writeUInt16BE(c, 2);
  return m;
}

export interface TcpPacketOptions extends TcpOptions {
  src: string;
  dst: string;
  ttl?: number;
  id?: number;
  df?: boolean;
}

export function tcpPacket(o: TcpPacketOptions, payload: Buffer): Buffer {
  const family = addrBytes(o.src).length === 4 ? 4 : 6;
  return ipPacket(
    { src: o.src, dst: o.dst, proto: PROTO_TCP, ...(o.ttl === undefined ? {} : { ttl: o.ttl }), ...(o.id === undefined ? {} : { id: o.id }), ...(o.df === undefined ? {} : { df: o.df }) },
    family === 4 || family === 6 ? tcpSegment(o.src, o.dst, o, payload) : payload,
  );
}

export interface VnetHeader {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

export const VNET_HDR_LEN = 10;
export const VNET_F_NEEDS_CSUM = 1;
export const VNET_GSO_NONE = 0;
export const VNET_GSO_TCPV4 = 1;
export const VNET_GSO_TCPV6 = 4;
export const VNET_GSO_UDP_L4 = 5;

/** The legacy virtio-net header TUN uses: native byte order. */
export function vnetHeader(h: VnetHeader): Buffer {
  const b = Buffer.alloc(VNET_HDR_LEN);
  const w = endianness() === 'LE' ? b.writeUInt16LE.bind(b) : b.writeUInt16BE.bind(b);
  b[0] = h.flags;
  b[1] = h.gsoType;
  w(h.hdrLen, 2);
  w(h.gsoSize, 4);
  w(h.csumStart, 6);
  w(h.csumOffset, 8);
  return b;
}

export function readVnetHeader(b: Buffer): VnetHeader {
  const r = endianness() === 'LE' ? b.readUInt16LE.bind(b) : b.readUInt16BE.bind(b);
  return { flags: b[0]!, gsoType: b[1]!, hdrLen: r(2), gsoSize: r(4), csumStart: r(6), csumOffset: r(8) };
}

/**
 * A TCP superpacket as the kernel hands it to a TUN device with TSO on: one
 * IP header for the whole payload, and the TCP checksum field holding the
 * pseudo-header sum (CHECKSUM_PARTIAL).
 */
export function tcpSuperpacket(o: TcpPacketOptions, payload: Buffer, mss: number): Buffer {
  const pkt = tcpPacket(o, payload);
  const family = addrBytes(o.src).length === 4 ? 4 : 6;
  const iphl = family === 4 ? 20 : 40;
  const thl = (pkt[iphl + 12]! >> 4) * 4;
  const tcpLen = pkt.length - iphl;
  const partial = ~internetChecksum(pseudoHeader(o.src, o.dst, PROTO_TCP, tcpLen)) & 0xffff;
  pkt.writeUInt16BE(partial, iphl + 16);
  const vh = vnetHeader({
    flags: VNET_F_NEEDS_CSUM,
    gsoType: family === 4 ? VNET_GSO_TCPV4 : VNET_GSO_TCPV6,
    hdrLen: iphl + thl,
    gsoSize: mss,
    csumStart: iphl,
    csumOffset: 16,
  });
  return concat([vh, pkt]);
}

export interface UdpPacketOptions {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  ttl?: number;
  id?: number;
  /** IPv4 DF (default set); a UDP GSO sender's datagrams go without it. */
  df?: boolean;
}

/** An IP packet around one UDP datagram. */
export function udpPacket(o: UdpPacketOptions, payload: Buffer): Buffer {
  const { sport, dport, ...ip } = o;
  return ipPacket({ ...ip, proto: PROTO_UDP }, udpDatagram(o.src, o.dst, sport, dport, payload));
}

/**
 * A UDP superpacket as the kernel hands it to a TUN device with USO on: one
 * IP and UDP header for every datagram's payload (`gsoSize` bytes each, the
 * last may be shorter), the checksum field holding the pseudo-header sum.
 */
export function udpSuperpacket(o: UdpPacketOptions, payload: Buffer, gsoSize: number): Buffer {
  const pkt = udpPacket(o, payload);
  const iphl = addrBytes(o.src).length === 4 ? 20 : 40;
  const partial = ~internetChecksum(pseudoHeader(o.src, o.dst, PROTO_UDP, pkt.length - iphl)) & 0xffff;
  pkt.writeUInt16BE(partial, iphl + 6);
  const vh = vnetHeader({ flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_UDP_L4, hdrLen: iphl + 8, gsoSize, csumStart: iphl, csumOffset: 6 });
  return concat([vh, pkt]);
}

export interface ParsedPacket {
  family: 4 | 6;
  src: string;
  dst: string;
  proto: number;
  ttl: number;
  headerLength: number;
  totalLength: number;
  id: number;
}

export function parseIpHeader(p: Buffer): ParsedPacket {
  const version = p[0]! >> 4;
  if (version === 4) {
    return {
      family: 4,
      src: IP.of(4, BigInt(p.readUInt32BE(12))).toString(),
      dst: IP.of(4, BigInt(p.readUInt32BE(16))).toString(),
      proto: p[9]!,
      ttl: p[8]!,
      headerLength: (p[0]! & 15) * 4,
      totalLength: p.readUInt16BE(2),
      id: p.readUInt16BE(4),
    };
  }
  const addr = (off: number) => IP.of(6, BigInt(`0x${p.subarray(off, off + 16).toString('hex')}`)).toString();
  return { family: 6, src: addr(8), dst: addr(24), proto: p[6]!, ttl: p[7]!, headerLength: 40, totalLength: 40 + p.readUInt16BE(4), id: 0 };
}

/** True when the transport checksum of a whole IP packet (TCP, UDP, ICMP, ICMPv6) verifies. */
export function transportChecksumOk(p: Buffer): boolean {
  const h = parseIpHeader(p);
  const l4 = p.subarray(h.headerLength, h.totalLength);
  if (h.proto === PROTO_ICMP) return internetChecksum(l4) === 0;
  return internetChecksum(pseudoHeader(h.src, h.dst, h.proto, l4.length), l4) === 0;
}
