// What every backend asks of a peer's lease: is it this node, is it on a
// directly connected network, and the route that reaches its pods directly.
import type { ExternalInterface } from './backend.js';
import type { PeerWarnings } from './peer-warnings.js';
import type { Route } from '../src/dataplane/state.js';
import type { Lease } from '../src/subnet/lease.js';

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
