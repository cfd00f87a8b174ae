// udp desired state: the TUN device weft0 holding the network address of the
// node's subnet in each family it runs, and one route per family's Network
// through it. Peers are not kernel state here: their table lives in the
// native loop (see udpPeers), except on-link peers of another backend during
// a switch (direct routes). Each family is computed by the same code
// (NodeFamilies): IPv4 subnets are reached over the peers' PublicIP, IPv6
// subnets over their PublicIPv6.
import type { ExternalInterface } from '../backend.js';
import { borrowedRoutes } from '../borrowed.js';
import { isSelf, otherBackendRoute, type FamilyView, type NodeFamilies } from '../peers.js';
import { emptyState, WEFT_LINK_PREFIX, type DesiredState } from '../../src/dataplane/state.js';
import type { Cidr } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';
import type { LoopTable } from './loop-client.js';
import type { UdpPeer } from './native.js';
import type { UdpOptions } from './options.js';

export const UDP = 'udp';
export const UDP_DEVICE = `${WEFT_LINK_PREFIX}0`;

/** Outer IP header plus UDP header over one family's side of the underlay: the payload is the inner IP packet itself. */
export function udpOverhead(side: ExternalInterface): number {
  return (side.ip.family === 6 ? 40 : 20) + 8;
}

/** The TUN MTU: Backend.MTU, or what the costliest underlay family leaves of the interface's MTU. */
export function udpMtu(options: UdpOptions, sides: readonly ExternalInterface[]): number {
  return options.mtu ?? Math.min(...sides.map((s) => s.mtu - udpOverhead(s)));
}

/** The node's state over the families it runs: one device, each family's address and Network route. */
export function udpDesired(families: NodeFamilies, own: Lease, peers: readonly Lease[], ext: ExternalInterface, networks: readonly Cidr[], mtu: number): DesiredState {
  const state = families.desired(own, peers, ext, (v) => udpFamilyDesired(v, networks.find((n) => n.family === v.family)));
  state.links.unshift({ name: UDP_DEVICE, spec: { kind: 'tun' }, mtu });
  return state;
}

/** One family: weft0's address in the subnet, the Network through weft0, on-link peers of another backend directly. */
export function udpFamilyDesired(view: FamilyView, network: Cidr | undefined): DesiredState {
  const state = emptyState();
  const { own, ext, warnings } = view;
  state.addrs.push({ dev: UDP_DEVICE, cidr: `${own.subnet.ip}/${own.subnet.ip.bits}` });
  if (network) state.routes.push({ dst: network.toString(), dev: UDP_DEVICE });
  for (const peer of view.peers) {
    if (isSelf(own, peer)) continue;
    if (peer.attrs.backendType === UDP) {
      // The Network route covers them, but not on the node whose subnet holds one: its bridge's subnet route is longer.
      state.routes.push(...borrowedRoutes({ dst: '', dev: UDP_DEVICE }, view.borrowed.get(peer)));
      continue;
    }
    const route = otherBackendRoute(peer, UDP, ext, warnings);
    if (route) state.routes.push(route, ...borrowedRoutes(route, view.borrowed.get(peer)));
  }
  return state;
}

/** The loop's table: its peers over every family the node runs, and this node's subnet and borrowed addresses in each. */
export function udpTable(families: NodeFamilies, own: Lease, peers: readonly Lease[], ext: ExternalInterface): LoopTable {
  const views = families.views(own, peers, ext);
  const owned = views.map((v) => v.own.subnet.toString());
  const borrowed = views.flatMap((v) => (v.own.attrs.borrowedIPs ?? []).map(String));
  return { peers: views.flatMap(udpPeers), ownSubnet: owned.length > 1 ? owned : owned[0] ?? null, ...(borrowed.length > 0 ? { borrowedIPs: borrowed } : {}) };
}

/**
 * One family's peers the loop can serve, each with an entry per borrowed
 * address (the loop matches the longest prefix, so a /32 beats the subnet
 * holding it); the others are reported once (other backends by udpFamilyDesired).
 */
export function udpPeers({ own, peers, ext, warnings, borrowed }: FamilyView): UdpPeer[] {
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
    const publicIP = peer.attrs.publicIP.toString();
    out.push({ subnet: peer.subnet.toString(), publicIP });
    for (const ip of borrowed.get(peer) ?? []) out.push({ subnet: ip.toString(), publicIP });
  }
  return out;
}
