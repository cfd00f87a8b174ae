// vxlan desired state: one kernel VXLAN device, and per peer a neighbour
// entry (peer gateway -> peer VTEP MAC), an FDB entry (VTEP MAC -> peer
// PublicIP) and an onlink route through the gateway. Static entries only:
// learning is off, so the kernel never floods or ARPs across the tunnel.
// Written for one family; a dual-stack node runs it per family (NodeFamilies).
import type { ExternalInterface } from '../backend.js';
import { directRoute, isOnLink, isSelf, otherBackendRoute } from '../peers.js';
import type { PeerWarnings } from '../peer-warnings.js';
import { isJsonObject, jsonType } from '../../src/config/fields.js';
import { emptyState, WEFT_LINK_PREFIX, type DesiredState } from '../../src/dataplane/state.js';
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
}

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
  // A MAC claimed twice would make FDB entries fight; in subnet order, the first claim wins.
  const macOwner = new Map<string, string>([[mac, 'this node']]);
  for (const peer of [...peers].sort(bySubnet)) {
    if (isSelf(own, peer)) continue;
    if (peer.attrs.backendType !== VXLAN) {
      const route = otherBackendRoute(peer, VXLAN, ext, warnings);
      if (route) state.routes.push(route);
      continue;
    }
    const vtep = peerVtepMac(peer, setup);
    const owner = vtep.mac && macOwner.get(vtep.mac);
    if (vtep.problem || owner) {
      const problem = vtep.problem ?? `its VtepMAC ${vtep.mac} is already used by ${owner}`;
      warnings.warn(peer, `ignoring vxlan peer ${peer.subnet} at ${peer.attrs.publicIP}: ${problem}`);
      continue;
    }
    macOwner.set(vtep.mac!, `peer ${peer.subnet}`);
    warnings.clear(peer);

    if (options.directRouting && isOnLink(peer, ext)) {
      state.routes.push(directRoute(peer, ext));
      continue;
    }
    const gateway = peer.subnet.ip.toString();
    state.neighs.push({ dev, ip: gateway, mac: vtep.mac! });
    state.fdb.push({ dev, mac: vtep.mac!, dst: peer.attrs.publicIP.toString() });
    state.routes.push({ dst: peer.subnet.toString(), via: gateway, dev, onlink: true });
  }
  return state;
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
