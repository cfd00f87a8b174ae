// UDP segmentation offload in the udp loop's native packet code: UDP
// superpackets read from TUN split into datagrams, received datagrams of a
// flow coalesced into one UDP_L4 write, and the TUNSETOFFLOAD fallback when
// the kernel predates USO. Through the test binding, no devices.
import t from 'tap';
import {
  TCP_ACK, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_UDP_L4, VNET_HDR_LEN,
  internetChecksum, parseIpHeader, readVnetHeader, tcpPacket, transportChecksumOk, udpPacket, udpSuperpacket, vnetHeader,
  type UdpPacketOptions,
} from '../../backends/udp/packets.js';
import { TUN_F, loadTestAddon } from '../support/native-test-addon.js';

const addon = loadTestAddon();

const A = '10.244.1.5';
const B = '10.244.2.7';
const A6 = 'fd00:1::5';
const B6 = 'fd00:2::7';

function pattern(n: number, salt = 0): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 11 + salt * 5 + (i >> 8)) & 0xff;
  return b;
}

/** What every datagram cut from a UDP superpacket must keep. */
const DATAGRAM_BEHAVIOURS = [
  'split returns datagrams', 'datagram count', 'IP length', 'IPv4 header checksum', 'IP ID increments',
  'UDP length', 'UDP checksum', 'ports', 'payload bytes', 'full size but the last', 'datagrams carry the whole payload',
] as const;
type DatagramBehaviour = (typeof DATAGRAM_BEHAVIOURS)[number];

t.test('split: a UDP_L4 superpacket becomes datagrams of gso_size payload with correct headers', async (t) => {
  const broken = new Map<DatagramBehaviour, string[]>(DATAGRAM_BEHAVIOURS.map((b) => [b, []]));
  const report = (b: DatagramBehaviour, where: string) => broken.get(b)!.push(where);
  for (const [src, dst, family] of [[A, B, 'IPv4'], [A6, B6, 'IPv6']] as const) {
    // Even, with a short last datagram, a one-byte last datagram, and 64 datagrams.
    for (const [size, gso] of [[1422 * 10, 1422], [1422 * 5 + 17, 1422], [3001, 1000], [64 * 1000, 1000], [2 * 1200 + 1, 1200]] as const) {
      const label = `${family} ${size}/${gso}`;
      const payload = pattern(size, gso);
      const o: UdpPacketOptions = { src, dst, sport: 4433, dport: 5202, id: 0xfffe };
      const dgrams = addon.split(udpSuperpacket(o, payload, gso));
      if (!Array.isArray(dgrams)) {
        report('split returns datagrams', `${label}: ${dgrams}`);
        continue;
      }
      if (dgrams.length !== Math.ceil(size / gso)) report('datagram count', `${label}: ${dgrams.length}`);
      let off = 0;
      dgrams.forEach((d, i) => {
        const where = `${label} datagram ${i}`;
        const check = (b: DatagramBehaviour, ok: boolean) => { if (!ok) report(b, where); };
        const h = parseIpHeader(d);
        check('IP length', h.totalLength === d.length);
        if (h.family === 4) {
          check('IPv4 header checksum', internetChecksum(d.subarray(0, 20)) === 0);
          check('IP ID increments', h.id === ((0xfffe + i) & 0xffff));
        }
        const udp = d.subarray(h.headerLength);
        check('UDP length', udp.readUInt16BE(4) === udp.length);
        check('UDP checksum', transportChecksumOk(d));
        check('ports', udp.readUInt16BE(0) === 4433 && udp.readUInt16BE(2) === 5202);
        const body = udp.subarray(8);
        check('payload bytes', body.equals(payload.subarray(off, off + body.length)));
        check('full size but the last', i === dgrams.length - 1 || body.length === gso);
        off += body.length;
      });
      if (off !== size) report('datagrams carry the whole payload', label);
    }
  }
  for (const [behaviour, where] of broken) t.same(where, [], behaviour);
});

t.test('split: a UDP_L4 header on anything but an unfragmented UDP packet is refused', async (t) => {
  const vh = vnetHeader({ flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_UDP_L4, hdrLen: 28, gsoSize: 500, csumStart: 20, csumOffset: 6 });
  const tcp = tcpPacket({ src: A, dst: B, sport: 1, dport: 2, seq: 0 }, pattern(2000));
  const zeroSize = Buffer.concat([vnetHeader({ ...readVnetHeader(vh), gsoSize: 0 }), udpPacket({ src: A, dst: B, sport: 1, dport: 2 }, pattern(2000))]);
  const verdicts = [addon.split(Buffer.concat([vh, tcp])), addon.split(zeroSize)];
  t.same(verdicts, ['badSuperpacket', 'badSuperpacket'], 'TCP under UDP_L4, and a zero gso_size');
});

/** How many datagrams each TUN write carries (a UDP_L4 write: its length over gso_size). */
function datagramsPerWrite(writes: Buffer[]): number[] {
  return writes.map((b) => {
    const vh = readVnetHeader(b);
    if (vh.gsoType === VNET_GSO_NONE) return 1;
    return Math.ceil((b.length - VNET_HDR_LEN - vh.hdrLen) / vh.gsoSize);
  });
}

/** Completes a UDP_L4 write's partial checksum (the field holds the pseudo-header sum) and cuts it as the kernel would, with the loop's own split. */
function kernelSegments(write: Buffer): Buffer[] {
  const vh = readVnetHeader(write);
  const pkt = Buffer.from(write.subarray(VNET_HDR_LEN));
  const c = internetChecksum(pkt.subarray(vh.csumStart));
  pkt.writeUInt16BE(c === 0 ? 0xffff : c, vh.csumStart + vh.csumOffset);
  const out = addon.split(Buffer.concat([vnetHeader({ ...vh, flags: 0 }), pkt]));
  return Array.isArray(out) ? out : [];
}

t.test('coalesce: consecutive datagrams of a flow become one UDP_L4 write the kernel cuts back into the same datagrams', async (t) => {
  const cases: string[] = [];
  for (const [src, dst, family] of [[B, A, 'IPv4'], [B6, A6, 'IPv6']] as const) {
    const sizes = [1422, 1422, 1422, 1422, 700];
    const dgrams = sizes.map((n, i) => udpPacket({ src, dst, sport: 5202, dport: 40000, id: 100 + i }, pattern(n, i)));
    const out = addon.coalesce(dgrams);
    const vh = out.length === 1 ? readVnetHeader(out[0]!) : undefined;
    const iphl = family === 'IPv4' ? 20 : 40;
    if (JSON.stringify(vh) !== JSON.stringify({ flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_UDP_L4, hdrLen: iphl + 8, gsoSize: 1422, csumStart: iphl, csumOffset: 6 })) {
      cases.push(`${family}: ${out.length} writes, header ${JSON.stringify(vh)}`);
      continue;
    }
    const back = kernelSegments(out[0]!);
    if (back.length !== dgrams.length || back.some((d, i) => !d.equals(dgrams[i]!))) cases.push(`${family}: datagrams differ after the round trip`);
  }
  t.same(cases, [], 'one UDP_L4 write per flow, giving back every datagram byte for byte (IPv4 and IPv6)');
});

t.test('coalesce: a flow change, a size change, a different TTL or DF, or an ID gap without DF ends a UDP superpacket', async (t) => {
  const dg = (n: number, o: Partial<UdpPacketOptions> = {}) => udpPacket({ src: B, dst: A, sport: 5202, dport: 40000, ...o }, pattern(n));
  const results = {
    interleaved: datagramsPerWrite(addon.coalesce([dg(1000), dg(1000, { sport: 6000 }), dg(1000), dg(1000, { sport: 6000 }), dg(1000)])),
    shortThenFull: datagramsPerWrite(addon.coalesce([dg(1000), dg(1000), dg(500), dg(1000), dg(1000)])),
    larger: datagramsPerWrite(addon.coalesce([dg(1000), dg(1000), dg(1200), dg(1200)])),
    ttl: datagramsPerWrite(addon.coalesce([dg(1000), dg(1000), dg(1000, { ttl: 3 })])),
    // Without DF (a UDP GSO sender's datagrams): only consecutive IDs, which the kernel gives back.
    noDfConsecutive: datagramsPerWrite(addon.coalesce([0, 1, 2].map((i) => dg(1000, { df: false, id: 7 + i })))),
    noDfIdGap: datagramsPerWrite(addon.coalesce([dg(1000, { df: false, id: 7 }), dg(1000, { df: false, id: 9 })])),
    dfChange: datagramsPerWrite(addon.coalesce([dg(1000), dg(1000, { df: false })])),
    otherProtocol: datagramsPerWrite(addon.coalesce([dg(1000), dg(1000), tcpPacket({ src: B, dst: A, sport: 5202, dport: 40000, seq: 0, flags: TCP_ACK }, pattern(1000))])),
  };
  t.same(results, {
    interleaved: [3, 2],
    shortThenFull: [3, 2],
    larger: [2, 2],
    ttl: [2, 1],
    noDfConsecutive: [3],
    noDfIdGap: [1, 1],
    dfChange: [1, 1],
    otherProtocol: [2, 1],
  }, 'datagrams per write');
});

t.test('coalesce: datagrams without a checksum pass alone, unchanged', async (t) => {
  const dg = udpPacket({ src: B, dst: A, sport: 1, dport: 2 }, pattern(800));
  const noSum = Buffer.from(dg);
  noSum.writeUInt16BE(0, 26);
  const out = addon.coalesce([noSum, noSum, noSum]);
  t.same({ perWrite: datagramsPerWrite(out), unchanged: out.every((b) => b.subarray(VNET_HDR_LEN).equals(noSum)) }, { perWrite: [1, 1, 1], unchanged: true });
});

t.test('coalesce: with USO off, or refused by the device, every datagram is written alone and intact', async (t) => {
  const dgrams = [0, 1, 2, 3].map((i) => udpPacket({ src: B, dst: A, sport: 9, dport: 10, id: i }, pattern(1200, i)));
  const tcp = [0, 1].map((i) => tcpPacket({ src: B, dst: A, sport: 9, dport: 11, seq: i * 1200 }, pattern(1200, i)));
  const off = addon.coalesce(dgrams, { uso: false });
  t.same(datagramsPerWrite(off), [1, 1, 1, 1], 'USO off: one write per datagram');
  // A device refusing UDP_L4 (EINVAL): the original datagrams in order (the
  // UDP flow, opened first, is written first), and TCP still merges.
  const refused = addon.coalesce([...dgrams.slice(0, 2), ...tcp, ...dgrams.slice(2)], { refuseUso: true });
  t.same(
    { perWrite: datagramsPerWrite(refused), tcpType: readVnetHeader(refused[4]!).gsoType, udpIntact: dgrams.every((d, i) => refused[i]!.subarray(VNET_HDR_LEN).equals(d)) },
    { perWrite: [1, 1, 1, 1, 2], tcpType: VNET_GSO_TCPV4, udpIntact: true },
    'refused: originals written alone, TCP still coalesced',
  );
});

t.test('coalesce: inner checksums are verified only when asked', async (t) => {
  const good = (i: number) => udpPacket({ src: B, dst: A, sport: 7, dport: 8 }, pattern(1000, i));
  const bad = good(1);
  bad[bad.length - 1]! ^= 0xff; // payload corrupted after the checksum was written
  t.same(
    { unverified: datagramsPerWrite(addon.coalesce([good(0), bad, good(2)])), verified: datagramsPerWrite(addon.coalesce([good(0), bad, good(2)], { verify: true })) },
    // Verified: the bad one goes alone, for the kernel to drop; its neighbours cannot merge across it.
    { unverified: [3], verified: [1, 1, 1] },
  );
});

t.test('offload negotiation: USO with TSO when the kernel has it, else TSO alone', async (t) => {
  const all = TUN_F.CSUM | TUN_F.TSO4 | TUN_F.TSO6 | TUN_F.TSO_ECN | TUN_F.UFO | TUN_F.USO4 | TUN_F.USO6;
  const pre62 = all & ~(TUN_F.USO4 | TUN_F.USO6);
  const withUso = TUN_F.CSUM | TUN_F.TSO4 | TUN_F.TSO6 | TUN_F.USO4 | TUN_F.USO6;
  const tsoOnly = TUN_F.CSUM | TUN_F.TSO4 | TUN_F.TSO6;
  t.same(addon.negotiateOffload(all), { checksumOffload: true, tso: true, uso: true, tried: [withUso] }, 'a 6.2+ kernel');
  t.same(addon.negotiateOffload(pre62), { checksumOffload: true, tso: true, uso: false, tried: [withUso, tsoOnly] }, 'an older kernel refuses USO: TSO kept');
  t.same(addon.negotiateOffload(all, { uso: false }), { checksumOffload: true, tso: true, uso: false, tried: [tsoOnly] }, 'USO switched off is never asked for');
  t.same(addon.negotiateOffload(0), { checksumOffload: false, tso: false, uso: false, tried: [withUso, tsoOnly, TUN_F.CSUM, 0] }, 'nothing accepted: offloads cleared');
});
