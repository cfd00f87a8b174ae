// host-gw: every peer's subnet is routed via the peer's PublicIP. Only works
// when that address is on a directly connected network of the external
// interface; other peers are refused (with a warning) and need vxlan.
// Dual-stack: the same rule per family, IPv6 subnets via PublicIPv6.
import type { BackendFactory, ExternalInterface } from '../backend.js';
import type { PeerWarnings } from '../peer-warnings.js';
import { directRoute, isOnLink, isSelf, NodeFamilies, otherBackendRoute } from '../peers.js';
import { emptyState, type DesiredState } from '../../src/dataplane/state.js';
import type { Lease } from '../../src/subnet/lease.js';
import { parseHostGwOptions } from './options.js';

const HOST_GW = 'host-gw';

export function hostGwDesired(own: Lease, peers: readonly Lease[], ext: ExternalInterface, warnings: PeerWarnings): DesiredState {
  const state = emptyState();
  warnings.retain(peers);
  for (const peer of peers) {
    if (isSelf(own, peer)) continue;
    if (peer.attrs.backendType !== HOST_GW) {
      const route = otherBackendRoute(peer, HOST_GW, ext, warnings);
      if (route) state.routes.push(route);
      continue;
    }
    if (!isOnLink(peer, ext)) {
      const nets = ext.connected.map(String).join(', ') || 'none';
      warnings.warn(peer, `host-gw cannot reach peer ${peer.subnet} at ${peer.attrs.publicIP}: not on a network directly connected to ${ext.name} (${nets}); use the vxlan backend for nodes on other segments`);
      continue;
    }
    warnings.clear(peer);
    state.routes.push(directRoute(peer, ext));
  }
  return state;
}

export const createHostGwBackend: BackendFactory = async (ctx) => {
  parseHostGwOptions(ctx.config.backend.raw); // rejects keys host-gw does not take
  const families = new NodeFamilies(ctx.logger);
  return {
    type: HOST_GW,
    mtu: ctx.ext.mtu,
    backendData: null,
    // Each family routes via the peer's address of that family (PublicIP, PublicIPv6).
    desired: (own, peers) => families.desired(own, peers, ctx.ext, (v) => hostGwDesired(v.own, v.peers, v.ext, v.warnings)),
    // Nothing to stop: the routes are the reconciler's to keep or remove.
    stop: async () => {},
  };
};
