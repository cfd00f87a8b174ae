// vxlan desired state: one kernel VXLAN device, and per peer a neighbour
// entry (peer gateway -> peer VTEP MAC), an FDB entry (VTEP MAC -> peer
// PublicIP) and an onlink route through the gateway. Static entries only:
// learning is off, so the kernel never floods or ARPs across the tunnel.
// Written for one family; a dual-stack node runs it per family (NodeFamilies).
import type { ExternalInterface } from '../backend.js';
import { borrowedRoutes, type BorrowedByPeer } from '../borrowed.js';
import { directRoute, isOnLink, isSelf, otherBackendRoute, type PeerMemo } from '../peers.js';
import type { PeerWarnings } from '../peer-warnings.js';
import { isJsonObject, jsonType } from '../../src/config/fields.js';
import { emptyState, WEFT_LINK_PREFIX, type DesiredState, type Fdb, type Neigh, type Route } from '../../src/dataplane/state.js';
import type { Family } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';
import { parseUnicastMac } from './mac.js';
import type { VxlanOptions } from './options.js';

export const VXLAN = 'vxlan';

/** What a vxlan node publishes in its lease (flannel's shape). */
export interface VxlanBackendData {
  VNI: number;
  VtepMAC: string;
}

export interface VxlanSetup {
  options: VxlanOptions;
  ext: ExternalInterface;
  /** This node's VTEP MAC. */
  mac: string;
  warnings: PeerWarnings;
  /** Each peer's part, kept while its lease stays the same (one per backend instance and family). */
  memo?: PeerMemo<VxlanPeerPart>;
  /** The peers' borrowed addresses to route to them, each the way its peer's subnet goes (through the VTEP, onlink). */
  borrowed?: BorrowedByPeer;
}

/**
 * What one peer contributes, apart from MAC clashes (which depend on the
 * other peers): nothing, a direct route, or its VTEP MAC with the entries
 * that tunnel to it.
 */
export type VxlanPeerPart =
  | { kind: 'none' }
  | { kind: 'route'; route: Route }
  | { kind: 'vtep'; mac: string; direct?: Route; neigh?: Neigh; fdb?: Fdb; route?: Route };

/**
 * One device per family, as flannel has (flannel.<VNI>, flannel-v6.<VNI>):
 * IPv6 pod traffic rides an IPv6 underlay on its own device, whose VTEP MAC
 * a dual-stack lease carries in BackendV6Data.
 */
export function vxlanDeviceName(vni: number, family: Family = 4): string {
  return family === 4 ? `${WEFT_LINK_PREFIX}.${vni}` : `${WEFT_LINK_PREFIX}-v6.${vni}`;
}

/** Outer IP header + UDP (8) + VXLAN (8) + the inner Ethernet header (14). */
export function vxlanOverhead(ext: ExternalInterface): number {
  return (ext.ip.family === 6 ? 40 : 20) + 8 + 8 + 14;
}

export function vxlanMtu(options: VxlanOptions, ext: ExternalInterface): number {
  return options.mtu ?? ext.mtu - vxlanOverhead(ext);
}

export function vxlanDesired(own: Lease, peers: readonly Lease[], setup: VxlanSetup): DesiredState {
  const { options, ext, mac, warnings } = setup;
  const dev = vxlanDeviceName(options.vni, own.subnet.family);
  const state = emptyState();
  state.links.push({
    name: dev,
    spec: { kind: 'vxlan', vni: options.vni, port: options.port, local: ext.ip.toString(), dev: ext.name, learning: false },
    mtu: vxlanMtu(options, ext),
    mac,
  });
  // The VTEP holds the subnet's first address as a host route (/32, or /128 for IPv6).
  state.addrs.push({ dev, cidr: `${own.subnet.ip}/${own.subnet.ip.bits}` });

  warnings.retain(peers);
  const parts = [...peers].sort(bySubnet).map((peer) => ({ peer, part: setup.memo ? setup.memo.get(own, peer, () => peerPart(own, peer, dev, setup)) : peerPart(own, peer, dev, setup) }));
  // A MAC claimed twice would make FDB entries fight; in subnet order, the first claim wins.
  const macOwner = new Map<string, Lease | 'this node'>([[mac, 'this node']]);
  for (const { peer, part } of parts) {
    if (part.kind === 'none') continue;
    const borrowed = setup.borrowed?.get(peer);
    if (part.kind === 'route') {
      state.routes.push(part.route, ...borrowedRoutes(part.route, borrowed));
      continue;
    }
    const owner = macOwner.get(part.mac);
    if (owner) {
      const by = owner === 'this node' ? owner : `peer ${owner.subnet}`;
      warnings.warn(peer, `ignoring vxlan peer ${peer.subnet} at ${peer.attrs.publicIP}: its VtepMAC ${part.mac} is already used by ${by}`);
      continue;
    }
    macOwner.set(part.mac, peer);
    warnings.clear(peer);
    if (part.direct) {
      state.routes.push(part.direct, ...borrowedRoutes(part.direct, borrowed));
      continue;
    }
    // The borrowed routes go through the same gateway, so they need no neighbour or FDB entry of their own.
    state.neighs.push(part.neigh!);
    state.fdb.push(part.fdb!);
    state.routes.push(part.route!, ...borrowedRoutes(part.route!, borrowed));
  }
  return state;
}

/** One peer's part; warns (once) about a peer of another backend or with unusable BackendData. */
function peerPart(own: Lease, peer: Lease, dev: string, setup: VxlanSetup): VxlanPeerPart {
  const { options, ext, warnings } = setup;
  if (isSelf(own, peer)) return { kind: 'none' };
  if (peer.attrs.backendType !== VXLAN) {
    const route = otherBackendRoute(peer, VXLAN, ext, warnings);
    return route ? { kind: 'route', route } : { kind: 'none' };
  }
  const vtep = peerVtepMac(peer, setup);
  if (vtep.problem) {
    warnings.warn(peer, `ignoring vxlan peer ${peer.subnet} at ${peer.attrs.publicIP}: ${vtep.problem}`);
    return { kind: 'none' };
  }
  const mac = vtep.mac!;
  if (options.directRouting && isOnLink(peer, ext)) return { kind: 'vtep', mac, direct: directRoute(peer, ext) };
  const gateway = peer.subnet.ip.toString();
  return {
    kind: 'vtep',
    mac,
    neigh: { dev, ip: gateway, mac },
    fdb: { dev, mac, dst: peer.attrs.publicIP.toString() },
    route: { dst: peer.subnet.toString(), via: gateway, dev, onlink: true },
  };
}

function bySubnet(a: Lease, b: Lease): number {
  return a.subnet.ip.value < b.subnet.ip.value ? -1 : a.subnet.ip.value > b.subnet.ip.value ? 1 : 0;
}

function shown(value: unknown): string {
  return (JSON.stringify(value) ?? String(value)).slice(0, 40);
}

/** The peer's VTEP MAC, or why the peer cannot be tunnelled to. */
function peerVtepMac(peer: Lease, { options, ext }: VxlanSetup): { mac?: string; problem?: string } {
  const data = peer.attrs.backendData;
  if (peer.attrs.publicIP.family !== ext.ip.family) {
    return { problem: `its address is IPv${peer.attrs.publicIP.family} and this node's tunnel runs over IPv${ext.ip.family}` };
  }
  if (!isJsonObject(data)) return { problem: `its BackendData is ${jsonType(data)}, not {"VNI", "VtepMAC"}` };
  if (data.VNI !== options.vni) {
    return { problem: `its VNI ${shown(data.VNI)} is not this node's VNI ${options.vni}; all nodes must use one VNI` };
  }
  const mac = parseUnicastMac(data.VtepMAC);
  if (!mac) return { problem: `its VtepMAC ${shown(data.VtepMAC)} is not a unicast MAC address` };
  return { mac };
}
