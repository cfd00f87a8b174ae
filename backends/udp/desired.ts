// udp desired state: the TUN device weft0 holding the node subnet's network
// address, and one route for the whole Network through it. Peers are not
// kernel state here: their table lives in the native loop (see udpPeers),
// except on-link peers of another backend during a switch (direct routes).
import type { ExternalInterface } from '../backend.js';
import { isSelf, otherBackendRoute } from '../peers.js';
import type { PeerWarnings } from '../peer-warnings.js';
import { emptyState, WEFT_LINK_PREFIX, type DesiredState } from '../../src/dataplane/state.js';
import type { Cidr } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';
import type { UdpPeer } from './native.js';
import type { UdpOptions } from './options.js';

export const UDP = 'udp';
export const UDP_DEVICE = `${WEFT_LINK_PREFIX}0`;

/** Outer IP header plus UDP header: the payload is the inner IP packet itself. */
export function udpOverhead(ext: ExternalInterface): number {
  return (ext.ip.family === 6 ? 40 : 20) + 8;
}

export function udpMtu(options: UdpOptions, ext: ExternalInterface): number {
  return options.mtu ?? ext.mtu - udpOverhead(ext);
}

/** Where the peers of another backend are met: the underlay and the warnings to report them with. */
export interface MixedPeers {
  peers: readonly Lease[];
  ext: ExternalInterface;
  warnings: PeerWarnings;
}

export function udpDesired(own: Lease, network: Cidr, mtu: number, mixed?: MixedPeers): DesiredState {
  const state = emptyState();
  state.links.push({ name: UDP_DEVICE, spec: { kind: 'tun' }, mtu });
  state.addrs.push({ dev: UDP_DEVICE, cidr: `${own.subnet.ip}/${own.subnet.ip.bits}` });
  state.routes.push({ dst: network.toString(), dev: UDP_DEVICE });
  if (!mixed) return state;
  for (const peer of mixed.peers) {
    if (isSelf(own, peer) || peer.attrs.backendType === UDP) continue;
    const route = otherBackendRoute(peer, UDP, mixed.ext, mixed.warnings);
    if (route) state.routes.push(route);
  }
  return state;
}

/** The peers the loop can serve, as its table wants them; the others are reported once (other backends by udpDesired). */
export function udpPeers(own: Lease, peers: readonly Lease[], ext: ExternalInterface, warnings: PeerWarnings): UdpPeer[] {
  warnings.retain(peers);
  const out: UdpPeer[] = [];
  for (const peer of peers) {
    if (isSelf(own, peer) || peer.attrs.backendType !== UDP) continue;
    if (peer.attrs.publicIP.family !== ext.ip.family) {
      warnings.warn(
        peer,
        `ignoring udp peer ${peer.subnet} at ${peer.attrs.publicIP}: its address is IPv${peer.attrs.publicIP.family} and this node's tunnel runs over IPv${ext.ip.family}`,
      );
      continue;
    }
    warnings.clear(peer);
    out.push({ subnet: peer.subnet.toString(), publicIP: peer.attrs.publicIP.toString() });
  }
  return out;
}
