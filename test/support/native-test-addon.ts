// The tests' own Node-API binding (native/src/addon_test.c, built beside the
// product's by `npm ci`): the udp loop's packet code and the netlink parser
// without devices or sockets. The product never loads it.
import { join } from 'node:path';
import type { DropReason, UdpPeer } from '../../backends/udp/native.js';
import { loadNativeAddon } from '../../src/core/native-addon.js';
import type { KernelEvent } from '../../src/dataplane/netlink.js';

const TEST_ADDON_FILE = join('native', 'build', 'Release', 'weft_udp_test.node');

export interface PeerSwapStats {
  lookups: number;
  inconsistent: number;
  emptyReads: number;
  published: number;
  freed: number;
  retiredLeft: number;
}

export type IcmpKind = 'unreachable' | 'timeExceeded' | 'tooBig';

export interface CoalesceOptions {
  /** The device refuses TCP GSO writes (EINVAL), as an old kernel does. */
  refuseGso?: boolean;
  /** The device refuses UDP_L4 writes. */
  refuseUso?: boolean;
  /** Merge UDP datagrams (default true, as with USO on). */
  uso?: boolean;
  /** Verify inner checksums before merging (default false, as the loop runs). */
  verify?: boolean;
}

/** TUNSETOFFLOAD flags (linux/if_tun.h). */
export const TUN_F = { CSUM: 0x01, TSO4: 0x02, TSO6: 0x04, TSO_ECN: 0x08, UFO: 0x10, USO4: 0x20, USO6: 0x40 } as const;

export interface TestAddon {
  /** Reader threads looking up the table while JS swaps it. */
  PeerSwapHarness: new (readers: number) => {
    setPeers(peers: readonly UdpPeer[], ownSubnet: string | null): void;
    stop(): PeerSwapStats;
  };
  /** The Internet checksum of `buf` as a number (0 when `buf` carries a valid one). */
  checksum(buf: Buffer): number;
  /** A table as the loop builds it: `ownSubnet` one CIDR or one per family, `borrowedIPs` this node's host routes outside them; peers over an underlay family not in `underlays` (default 4) left out. */
  peerTable(peers: readonly UdpPeer[], ownSubnet: string | readonly string[] | null, underlays?: 4 | 6 | readonly (4 | 6)[], borrowedIPs?: readonly string[]): unknown;
  /** What the loop does with `packet` arriving from `fromIP`: "ok" or the drop reason. */
  inboundVerdict(table: unknown, fromIP: string, packet: Buffer): 'ok' | DropReason;
  /** Splits virtio header + packet into wire segments, or returns the drop reason. */
  split(buf: Buffer): Buffer[] | DropReason | 'tooManySegments';
  /** Coalesces packets as the receive path does; each result is virtio header + packet. */
  coalesce(packets: readonly Buffer[], opts?: CoalesceOptions): Buffer[];
  /** The loop's TUNSETOFFLOAD requests against a kernel accepting only the flags in `accept`: what it asked, in order, and what it got. */
  negotiateOffload(accept: number, want?: { tso?: boolean; uso?: boolean }): { checksumOffload: boolean; tso: boolean; uso: boolean; tried: number[] };
  icmpError(packet: Buffer, kind: IcmpKind, mtu: number, sourceIP: string): Buffer | null;
  /**
   * Runs TUN reads (virtio header + packet, at most 16) through the transmit
   * path with no sockets: each queued UDP message, the underlay address it
   * goes to, and the frag-needed error the loop would send if the kernel
   * refused it as too big (`mtu` advertised). The errors the loop wrote back
   * into the TUN device (no route, hop limit) are pushed onto `replies`.
   */
  transmit(table: unknown, reads: readonly Buffer[], mtu: number, replies?: Buffer[]): { datagram: Buffer; to: string; tooBig: Buffer | null }[];
  /** The events the parser finds in raw netlink bytes (tests feed it garbage). */
  parseNetlink(buf: Buffer): KernelEvent[];
}

export function loadTestAddon(): TestAddon {
  return loadNativeAddon<TestAddon>('the unit tests', TEST_ADDON_FILE);
}
