// host-gw: every peer's subnet is routed via the peer's PublicIP. Only works
// when that address is on a directly connected network of the external
// interface; other peers are refused (with a warning) and need vxlan.
// Dual-stack: the same rule per family, IPv6 subnets via PublicIPv6.
import type { BackendFactory, ExternalInterface } from '../backend.js';
import { borrowedRoutes, type BorrowedByPeer } from '../borrowed.js';
import type { PeerWarnings } from '../peer-warnings.js';
import { directRoute, isOnLink, isSelf, NodeFamilies, otherBackendRoute, PeerMemo } from '../peers.js';
import { emptyState, type DesiredState, type Route } from '../../src/dataplane/state.js';
import type { Lease } from '../../src/subnet/lease.js';
import { parseHostGwOptions } from './options.js';

const HOST_GW = 'host-gw';

/**
 * `memo` (one per backend instance and family) keeps each peer's route while
 * its lease stays the same. Each peer's `borrowed` addresses go the way its
 * subnet goes: a host route via its PublicIP.
 */
export function hostGwDesired(
  own: Lease,
  peers: readonly Lease[],
  ext: ExternalInterface,
  warnings: PeerWarnings,
  memo?: PeerMemo<Route | undefined>,
  borrowed?: BorrowedByPeer,
): DesiredState {
  const state = emptyState();
  warnings.retain(peers);
  for (const peer of peers) {
    const route = memo ? memo.get(own, peer, () => peerRoute(own, peer, ext, warnings)) : peerRoute(own, peer, ext, warnings);
    if (route) state.routes.push(route, ...borrowedRoutes(route, borrowed?.get(peer)));
  }
  return state;
}

/** The route to one peer, undefined for this node itself and for peers it cannot reach (warned about). */
function peerRoute(own: Lease, peer: Lease, ext: ExternalInterface, warnings: PeerWarnings): Route | undefined {
  if (isSelf(own, peer)) return undefined;
  if (peer.attrs.backendType !== HOST_GW) return otherBackendRoute(peer, HOST_GW, ext, warnings);
  if (!isOnLink(peer, ext)) {
    const nets = ext.connected.map(String).join(', ') || 'none';
    warnings.warn(peer, `host-gw cannot reach peer ${peer.subnet} at ${peer.attrs.publicIP}: not on a network directly connected to ${ext.name} (${nets}); use the vxlan backend for nodes on other segments`);
    return undefined;
  }
  warnings.clear(peer);
  return directRoute(peer, ext);
}

export const createHostGwBackend: BackendFactory = async (ctx) => {
  parseHostGwOptions(ctx.config.backend.raw); // rejects keys host-gw does not take
  const families = new NodeFamilies(ctx.logger);
  const memos = { 4: new PeerMemo<Route | undefined>(), 6: new PeerMemo<Route | undefined>() };
  return {
    type: HOST_GW,
    mtu: ctx.ext.mtu,
    backendData: null,
    // Each family routes via the peer's address of that family (PublicIP, PublicIPv6).
    desired: (own, peers) => families.desired(own, peers, ctx.ext, (v) => hostGwDesired(v.own, v.peers, v.ext, v.warnings, memos[v.family], v.borrowed)),
    // Nothing to stop: the routes are the reconciler's to keep or remove.
    stop: async () => {},
  };
};
