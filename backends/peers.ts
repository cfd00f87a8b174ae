// What every backend asks of a peer's lease: is it this node, is it on a
// directly connected network, the route that reaches its pods directly, and
// which address families this node and the peer share.
import type { Logger } from 'pino';
import { extHalf, type ExternalInterface } from './backend.js';
import { BorrowedClaims, type BorrowedByPeer } from './borrowed.js';
import { PeerWarnings } from './peer-warnings.js';
import type { Family } from '../src/core/cidr.js';
import { emptyState, mergeInto, type DesiredState, type Route } from '../src/dataplane/state.js';
import { leaseFamilies, leaseHalf, leaseHalves, type Lease } from '../src/subnet/lease.js';

/** A peer is this node itself when it holds our subnet or our address. */
export function isSelf(own: Lease, peer: Lease): boolean {
  return peer.subnet.equals(own.subnet) || peer.attrs.publicIP.equals(own.attrs.publicIP);
}

/** True when the peer's PublicIP is on a directly connected network of `ext`. */
export function isOnLink(peer: Lease, ext: ExternalInterface): boolean {
  return ext.connected.some((net) => net.contains(peer.attrs.publicIP));
}

/** The route that reaches a peer's pods directly over the underlay. */
export function directRoute(peer: Lease, ext: ExternalInterface): Route {
  return { dst: peer.subnet.toString(), via: peer.attrs.publicIP.toString(), dev: ext.name };
}

/**
 * A peer whose lease names another backend type. During a backend switch the
 * cluster is mixed for a moment: a peer that has already switched must stay
 * reachable until this node switches too. Whatever its backend, a node
 * forwards plain packets addressed to its pods, so an on-link peer is reached
 * by the direct route; any other one is ignored. Reported once either way.
 */
export function otherBackendRoute(peer: Lease, ownType: string, ext: ExternalInterface, warnings: PeerWarnings): Route | undefined {
  const onLink = isOnLink(peer, ext);
  warnings.otherBackend(peer, ownType, onLink ? ext.name : undefined);
  return onLink ? directRoute(peer, ext) : undefined;
}

/** One address family of this node: its lease half, the peers' halves and the interface's side. */
export interface FamilyView {
  family: Family;
  own: Lease;
  peers: Lease[];
  ext: ExternalInterface;
  /** Warnings about this family's peers (a peer's halves are reported apart). */
  warnings: PeerWarnings;
  /** The peers' borrowed addresses of this family that this node routes to them, claims settled. */
  borrowed: BorrowedByPeer;
}

/**
 * Splits the node into the families it runs: the primary one, and IPv6 when
 * this node's lease has an IPv6 half and its interface an IPv6 address. A
 * backend computes each family with the same code and merges the results.
 * A dual-stack node's peer without an IPv6 half is reached in IPv4 only,
 * reported once.
 */
export class NodeFamilies {
  private readonly warnings: Record<Family, PeerWarnings>;
  private readonly halfMissing: PeerWarnings;
  private readonly claims: Record<Family, BorrowedClaims>;

  constructor(logger: Logger) {
    this.warnings = { 4: new PeerWarnings(logger), 6: new PeerWarnings(logger) };
    this.claims = { 4: new BorrowedClaims(logger), 6: new BorrowedClaims(logger) };
    this.halfMissing = new PeerWarnings(logger);
  }

  views(own: Lease, peers: readonly Lease[], ext: ExternalInterface): FamilyView[] {
    const views: FamilyView[] = [];
    for (const family of leaseFamilies(own)) {
      const ownHalf = leaseHalf(own, family);
      const extSide = extHalf(ext, family);
      if (!ownHalf || !extSide) continue;
      const peerHalves = leaseHalves(peers, family);
      views.push({ family, own: ownHalf, peers: peerHalves, ext: extSide, warnings: this.warnings[family], borrowed: this.claims[family].settle(ownHalf, peerHalves) });
    }
    if (views.length > 1) this.reportHalfMissing(own, peers, views.map((v) => v.family));
    return views;
  }

  /** Each family's desired state from one function, merged. */
  desired(own: Lease, peers: readonly Lease[], ext: ExternalInterface, fn: (view: FamilyView) => DesiredState): DesiredState {
    return this.views(own, peers, ext).reduce((state, view) => mergeInto(state, fn(view)), emptyState());
  }

  private reportHalfMissing(own: Lease, peers: readonly Lease[], families: Family[]): void {
    this.halfMissing.retain(peers);
    for (const peer of peers) {
      if (isSelf(own, peer)) continue;
      const missing = families.filter((f) => !leaseHalf(peer, f));
      if (missing.length === 0) {
        this.halfMissing.clear(peer);
        continue;
      }
      const has = leaseFamilies(peer).map((f) => `IPv${f}`).join(' and ');
      const lacks = missing.map((f) => `IPv${f}`).join(' and ');
      this.halfMissing.warn(peer, `peer ${peer.subnet} at ${peer.attrs.publicIP} is reached in ${has} only: its lease has no ${lacks} subnet and address (is ${lacks} enabled on that node, with an address on its interface?)`);
    }
  }
}

/**
 * A backend's per-peer result, kept while the peer's lease object and this
 * node's own lease stay the same. The agent recomputes desired state over
 * every peer on each lease event, and a lease event changes one peer: the
 * others cost a lookup, not a recomputation (with its warnings, already said).
 * A changed lease arrives as a new object, so it is always computed afresh.
 */
export class PeerMemo<T> {
  private readonly results = new WeakMap<Lease, { own: Lease; value: T }>();

  get(own: Lease, peer: Lease, compute: () => T): T {
    const hit = this.results.get(peer);
    if (hit && hit.own === own) return hit.value;
    const value = compute();
    this.results.set(peer, { own, value });
    return value;
  }
}
