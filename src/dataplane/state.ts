// Desired-state types: what should exist in the kernel. Backends produce
// these; only the reconciler turns them into kernel changes.

/** Routing-protocol number on every route weft installs (`ip route ... proto 147`). */
export const WEFT_ROUTE_PROTO = 147;

/** Every device weft owns has a name starting with this. */
export const WEFT_LINK_PREFIX = 'weft';

export interface VxlanLinkSpec {
  kind: 'vxlan';
  vni: number;
  port: number;
  /** Underlay source address. */
  local: string;
  /** Underlay device the tunnel is bound to. */
  dev: string;
  learning: false;
}

export interface TunLinkSpec {
  kind: 'tun';
  /** TUN devices are opened by the udp backend's native loop; the reconciler only sets MTU/up. */
}

export interface Link {
  name: string;
  spec: VxlanLinkSpec | TunLinkSpec;
  mtu: number;
  /** Fixed MAC address (vxlan VTEP). */
  mac?: string;
}

export interface Addr {
  dev: string;
  /** "10.5.3.0/32" */
  cidr: string;
}

export interface Route {
  /** Destination prefix, "10.5.3.0/24". */
  dst: string;
  via?: string;
  dev?: string;
  onlink?: boolean;
}

export interface Neigh {
  dev: string;
  ip: string;
  mac: string;
}

export interface Fdb {
  dev: string;
  mac: string;
  /** Remote VTEP underlay address. */
  dst: string;
}

export interface DesiredState {
  links: Link[];
  addrs: Addr[];
  routes: Route[];
  neighs: Neigh[];
  fdb: Fdb[];
}

export function emptyState(): DesiredState {
  return { links: [], addrs: [], routes: [], neighs: [], fdb: [] };
}

/** Appends `extra`'s entries to `state` (two backends during a drain, two address families). */
export function mergeInto(state: DesiredState, extra: DesiredState): DesiredState {
  state.links.push(...extra.links);
  state.addrs.push(...extra.addrs);
  state.routes.push(...extra.routes);
  state.neighs.push(...extra.neighs);
  state.fdb.push(...extra.fdb);
  return state;
}
