// Typed access to the udp backend's Node-API addon (native/), built by
// node-gyp at `npm ci`. The hot loop runs on the addon's own threads.
import { loadNativeAddon } from '../../src/core/native-addon.js';

export interface UdpLoopOptions {
  /** TUN device name; created when missing, reused when present. */
  device: string;
  port: number;
  /** Local underlay address the UDP sockets bind to; its family is the tunnel's. */
  bindAddress: string;
  /** A dual-stack node's IPv6 underlay address (bindAddress is then IPv4): the loop receives on both, and reaches each peer over its address's family. */
  bindAddressV6?: string;
  mode?: 'fast' | 'simple';
  queues?: number;
  /** Offloads to try in fast mode (all default on); for measuring each one's gain. */
  offload?: { tso?: boolean; gso?: boolean; gro?: boolean; coalesce?: boolean; uso?: boolean };
  /**
   * Verify each received inner TCP/UDP checksum before coalescing (default
   * off: the outer UDP checksum already covered the packet, see gso.c).
   */
  verifyInnerChecksums?: boolean;
}

export interface UdpPeer {
  subnet: string;
  publicIP: string;
}

export type DropReason =
  | 'short' | 'badVersion' | 'badLength' | 'badHeader' | 'notPeer' | 'spoofedSource'
  | 'destinationNotLocal' | 'noRoute' | 'ttlExpired' | 'tooBig' | 'badSuperpacket'
  | 'sendError' | 'tunWriteError' | 'noPeerTable' | 'notUnicast';

export interface UdpCounters {
  tunReads: number;
  tunRxPackets: number;
  tunRxBytes: number;
  tunRxSuperpackets: number;
  udpTxCalls: number;
  udpTxDatagrams: number;
  udpTxBytes: number;
  udpTxGsoMessages: number;
  udpRxCalls: number;
  /** Datagrams received (each segment of a GRO train counts). */
  udpRxDatagrams: number;
  udpRxBytes: number;
  udpRxGroMessages: number;
  /** Datagrams written to the TUN device. */
  udpRxDelivered: number;
  /** Datagrams the kernel dropped before the loop saw them (socket buffer full). */
  udpRxKernelDrops: number;
  tunWrites: number;
  tunTxBytes: number;
  tunTxCoalesced: number;
  tunTxCoalescedSegments: number;
  icmpUnreachable: number;
  icmpTimeExceeded: number;
  icmpTooBig: number;
  icmpRateLimited: number;
  udpGsoFallbacks: number;
  tunGsoRefused: number;
  /** UDP_L4 writes the device refused; UDP coalescing is then off. */
  tunUsoRefused: number;
  tunErrors: number;
  tableSwapsSeen: number;
  udpGsoDisabled: number;
  /** 1 once the TUN device was deleted under the loop. */
  tunLost: number;
  dropsInbound: Record<DropReason, number>;
  dropsOutbound: Record<DropReason, number>;
  /** log2 buckets: 1, 2-3, 4-7, ..., 128+ */
  histograms: { udpRxBatch: number[]; udpTxSegments: number[]; tunWriteSegments: number[] };
}

export interface UdpFeatures {
  device: string;
  mode: 'fast' | 'simple';
  queues: number;
  vnetHdr: boolean;
  tso: boolean;
  checksumOffload: boolean;
  udpGso: boolean;
  udpGro: boolean;
  coalesce: boolean;
  /** UDP segmentation offload on TUN (Linux >= 6.2): UDP superpacket reads, coalesced UDP writes. */
  uso: boolean;
  verifyInnerChecksums: boolean;
}

export interface UdpLoop {
  start(): void;
  /** Wakes and joins the workers and closes the fds; `teardown` also deletes the device. */
  stop(teardown?: boolean): void;
  /**
   * Swaps the peer table in atomically; returns how many entries it holds
   * (peers over an underlay family the loop has no socket for are left out).
   * Traffic is taken for `ownSubnet` (one CIDR, or one per family) and for
   * `borrowedIPs` (this node's host routes outside them; the first 128 count,
   * as many as a lease holds).
   */
  setPeers(peers: readonly UdpPeer[], ownSubnet: string | readonly string[] | null, borrowedIPs?: readonly string[] | null): number;
  counters(): UdpCounters;
  features(): UdpFeatures;
  /** True once the TUN device was deleted under the loop; it must be reopened. */
  deviceLost(): boolean;
}

export interface UdpAddon {
  UdpLoop: new (opts: UdpLoopOptions) => UdpLoop;
}

/** Loads the addon (Node caches it), or says how to build it. */
export function loadUdpAddon(): UdpAddon {
  return loadNativeAddon<UdpAddon>('the udp backend');
}
