// Borrowed addresses: a pinned pod running outside its home subnet is
// published by the node it runs on as a host route in that node's lease
// (LeaseAttrs.borrowedIPs), and every other node routes it there the way it
// routes that node's subnet. Which lease wins an address two leases claim is
// settled here, once for every backend, the same way on every node.
import type { Logger } from 'pino';
import { PeerWarnings } from './peer-warnings.js';
import type { Cidr } from '../src/core/cidr.js';
import type { Route } from '../src/dataplane/state.js';
import type { Lease } from '../src/subnet/lease.js';

/** Each peer's borrowed addresses this node routes to it (peers with none are absent). */
export type BorrowedByPeer = ReadonlyMap<Lease, readonly Cidr[]>;

/**
 * Settles the peers' claims of one family. An address this node borrows
 * itself is never routed away (its pod is here). An address two peers claim
 * goes to the lease with the lower subnet: every node sees the same leases,
 * so every node picks the same one with no clock or extra state, and the
 * claim that is stale (the pod's old node not yet republished) lasts only
 * until that node drops it. Each losing peer is warned about once.
 */
export class BorrowedClaims {
  private readonly warnings: PeerWarnings;

  constructor(logger: Logger) {
    this.warnings = new PeerWarnings(logger);
  }

  settle(own: Lease, peers: readonly Lease[]): BorrowedByPeer {
    const winner = new Map<string, Lease>();
    for (const ip of own.attrs.borrowedIPs ?? []) winner.set(ip.toKey(), own);
    const claimants = peers.filter((p) => p !== own && (p.attrs.borrowedIPs?.length ?? 0) > 0).sort(bySubnet);
    const out = new Map<Lease, Cidr[]>();
    const lost = new Map<Lease, string[]>();
    for (const peer of claimants) {
      if (peer.subnet.equals(own.subnet)) continue; // this node's own lease as the watch reports it
      for (const ip of peer.attrs.borrowedIPs!) {
        const key = ip.toKey();
        const holder = winner.get(key);
        if (holder) {
          const by = holder === own ? 'this node' : `peer ${holder.subnet} at ${holder.attrs.publicIP}`;
          lost.set(peer, [...(lost.get(peer) ?? []), `${ip} (also claimed by ${by})`]);
          continue;
        }
        winner.set(key, peer);
        out.set(peer, [...(out.get(peer) ?? []), ip]);
      }
    }
    this.report(peers, lost);
    return out;
  }

  private report(peers: readonly Lease[], lost: ReadonlyMap<Lease, string[]>): void {
    this.warnings.retain(peers);
    for (const peer of peers) {
      const what = lost.get(peer);
      if (!what) {
        this.warnings.clear(peer);
        continue;
      }
      this.warnings.warn(peer, `not routing borrowed addresses of peer ${peer.subnet} at ${peer.attrs.publicIP} to it: ${what.join(', ')}; an address is routed to one node, the lease with the lower subnet`);
    }
  }
}

/** The routes that send `ips` (a peer's borrowed addresses) the way `toPeer` sends its subnet. */
export function borrowedRoutes(toPeer: Route, ips: readonly Cidr[] | undefined): Route[] {
  return (ips ?? []).map((ip) => ({ ...toPeer, dst: ip.toString() }));
}

function bySubnet(a: Lease, b: Lease): number {
  return a.subnet.ip.value < b.subnet.ip.value ? -1 : a.subnet.ip.value > b.subnet.ip.value ? 1 : 0;
}
