// The allocator: pure functions from a state and a request to a new state.
// The store (store.ts) reads, locks and writes; nothing here touches a file.
//
// Addresses come from the node's subnet(s), one address per family. The
// search starts after the range's last handed-out address and wraps, as
// host-local does, so an address just freed is not handed out again at once
// (a peer may still hold a conntrack entry or an ARP entry for it).
import { Cidr, IP, type Family } from '../core/cidr.js';
import type { Allocation, IpamState, PodRef, Reservation } from './state.js';

/** A range the node allocates from: its subnet and gateway (the bridge's address). */
export interface Range {
  subnet: Cidr;
  /** Defaults to the first host address; none in a subnet of fewer than 4 addresses. */
  gateway?: IP;
}

export interface AllocateRequest {
  containerId: string;
  ifname: string;
  netns: string;
  pod?: PodRef;
  /** Pinned addresses, at most one per family (weft.io/ip or a pool's). */
  requested?: IP[];
  mac?: string;
  /**
   * The cluster Network(s): a pinned address outside this node's ranges but
   * inside one of them is borrowed (its pod moved here from its subnet's node).
   */
  networks?: Cidr[];
  now: Date;
}

export type IpamErrorKind = 'exhausted' | 'conflict' | 'invalid';

/** A request the allocator refuses; the message is one line naming the address and the cause. */
export class IpamError extends Error {
  constructor(readonly kind: IpamErrorKind, msg: string) {
    super(msg);
    this.name = 'IpamError';
  }
}

/** The addresses of a range that are never handed out: network, gateway, broadcast. */
function infrastructure(range: Range): { values: Set<bigint>; names: Map<bigint, string> } {
  const s = range.subnet;
  const names = new Map<bigint, string>();
  // A /31, /32, /127 or /128 has no room for them: every address is a host.
  if (s.size >= 4n) {
    names.set(s.ip.value, 'the network address');
    if (s.family === 4) names.set(s.last.value, 'the broadcast address');
  }
  const gw = gatewayOf(range);
  if (gw) names.set(gw.value, 'the gateway');
  return { values: new Set(names.keys()), names };
}

export function gatewayOf(range: Range): IP | undefined {
  if (range.gateway) return range.gateway;
  return range.subnet.size >= 4n ? range.subnet.ip.add(1) : undefined;
}

function podName(pod: PodRef | undefined): string | undefined {
  return pod ? `${pod.namespace}/${pod.name}` : undefined;
}

function samePod(a: PodRef | undefined, b: PodRef | undefined): boolean {
  if (!a || !b || a.namespace !== b.namespace || a.name !== b.name) return false;
  return true;
}

function holderOf(a: Allocation): string {
  return podName(a.pod) ? `pod ${podName(a.pod)} (container ${a.containerId.slice(0, 12)})` : `container ${a.containerId.slice(0, 12)}`;
}

/** Every address value of `family` that is taken: allocated, reserved or borrowed out. */
function heldValues(state: IpamState, family: Family): Set<bigint> {
  const held = new Set<bigint>();
  const add = (text: string) => {
    const ip = IP.parse(text);
    if (ip.family === family) held.add(ip.value);
  };
  for (const a of state.allocations) add(a.address);
  for (const r of state.reservations) add(r.address);
  for (const b of state.borrowedOut) add(b);
  return held;
}

/** The allocations of one container interface, if it has any. */
export function allocationsOf(state: IpamState, containerId: string, ifname: string): Allocation[] {
  return state.allocations.filter((a) => a.containerId === containerId && a.ifname === ifname);
}

/**
 * Gives the container interface one address per family of `ranges`. An
 * interface that already has addresses gets the same ones back, the state
 * unchanged (ADD is idempotent). Throws IpamError on a conflict or exhaustion.
 */
export function allocate(state: IpamState, ranges: Range[], req: AllocateRequest): { state: IpamState; allocated: Allocation[] } {
  const existing = allocationsOf(state, req.containerId, req.ifname);
  if (existing.length > 0) return { state, allocated: existing };
  const families = [...new Set(ranges.map((r) => r.subnet.family))];
  const requested = checkRequested(req.requested ?? [], families);
  let next: IpamState = state;
  const allocated: Allocation[] = [];
  for (const family of families) {
    const own = ranges.filter((r) => r.subnet.family === family);
    const want = requested.get(family);
    const a = want ? takePinned(next, own, want, req) : takeNext(next, own, req);
    next = a.state;
    allocated.push(a.allocation);
  }
  return { state: next, allocated };
}

function checkRequested(requested: IP[], families: Family[]): Map<Family, IP> {
  const out = new Map<Family, IP>();
  for (const ip of requested) {
    if (out.has(ip.family)) throw new IpamError('invalid', `two IPv${ip.family} addresses requested (${out.get(ip.family)} and ${ip}); give at most one per family`);
    if (!families.includes(ip.family)) throw new IpamError('invalid', `requested address ${ip} is IPv${ip.family}, but this node has no IPv${ip.family} subnet`);
    out.set(ip.family, ip);
  }
  return out;
}

function record(req: AllocateRequest, ip: IP, pinned: boolean, mac: string | undefined, borrowed = false): Allocation {
  const a: Allocation = {
    address: ip.toString(),
    family: ip.family,
    containerId: req.containerId,
    ifname: req.ifname,
    netns: req.netns,
    since: req.now.toISOString(),
    pinned,
  };
  if (req.pod) a.pod = { ...req.pod };
  if (mac) a.mac = mac;
  if (borrowed) a.borrowed = true;
  return a;
}

function takePinned(state: IpamState, ranges: Range[], ip: IP, req: AllocateRequest): { state: IpamState; allocation: Allocation } {
  const range = ranges.find((r) => r.subnet.contains(ip));
  if (!range) return takeBorrowed(state, ranges, ip, req);
  const infra = infrastructure(range).names.get(ip.value);
  if (infra) throw new IpamError('invalid', `requested address ${ip} is ${infra} of ${range.subnet}; pick a host address`);
  const text = ip.toString();
  const holder = state.allocations.find((a) => IP.parse(a.address).equals(ip));
  if (holder) throw new IpamError('conflict', `requested address ${ip} is held by ${holderOf(holder)}`);
  if (state.borrowedOut.some((b) => IP.parse(b).equals(ip))) {
    throw new IpamError('conflict', `requested address ${ip} is borrowed by another node for a pinned pod there`);
  }
  let reservations = state.reservations;
  let mac = req.mac;
  const reserved = state.reservations.find((r) => IP.parse(r.address).equals(ip));
  if (reserved) {
    if (!samePod(reserved.pod, req.pod)) {
      throw new IpamError('conflict', `requested address ${ip} is reserved for pod ${podName(reserved.pod)}`);
    }
    // The pod is back: its reservation becomes its allocation, MAC included.
    reservations = state.reservations.filter((r) => r !== reserved);
    mac ??= reserved.mac;
  }
  const allocation = record(req, IP.parse(text), true, mac);
  return { state: { ...state, reservations, allocations: [...state.allocations, allocation] }, allocation };
}

/**
 * A pinned address of another node's subnet: this node only records it (the
 * lender keeps it out of its own pool while this node's lease publishes it).
 * Still refused when this node holds it already or it is a Network's own address.
 */
function takeBorrowed(state: IpamState, ranges: Range[], ip: IP, req: AllocateRequest): { state: IpamState; allocation: Allocation } {
  const network = (req.networks ?? []).find((n) => n.contains(ip));
  if (!network) {
    const subnets = ranges.map((r) => r.subnet).join(', ');
    const networks = (req.networks ?? []).join(', ');
    throw new IpamError('invalid', `requested address ${ip} is outside this node's subnet ${subnets}${networks ? ` and the cluster Network ${networks}` : ''}`);
  }
  if (network.size >= 4n && (ip.equals(network.ip) || (ip.family === 4 && ip.equals(network.last)))) {
    throw new IpamError('invalid', `requested address ${ip} is the ${ip.equals(network.ip) ? 'network' : 'broadcast'} address of the cluster Network ${network}; pick a host address`);
  }
  const holder = state.allocations.find((a) => IP.parse(a.address).equals(ip));
  if (holder) throw new IpamError('conflict', `requested address ${ip} is held by ${holderOf(holder)}`);
  const reserved = state.reservations.find((r) => IP.parse(r.address).equals(ip));
  if (reserved && !samePod(reserved.pod, req.pod)) {
    throw new IpamError('conflict', `requested address ${ip} is reserved for pod ${podName(reserved.pod)}`);
  }
  const reservations = reserved ? state.reservations.filter((r) => r !== reserved) : state.reservations;
  const allocation = record(req, ip, true, req.mac ?? reserved?.mac, true);
  return { state: { ...state, reservations, allocations: [...state.allocations, allocation] }, allocation };
}

function takeNext(state: IpamState, ranges: Range[], req: AllocateRequest): { state: IpamState; allocation: Allocation } {
  const held = heldValues(state, ranges[0]!.subnet.family);
  const full: string[] = [];
  for (const range of ranges) {
    const ip = nextFree(range, held, state.lastPosition[range.subnet.toString()]);
    if (typeof ip === 'string') {
      full.push(ip);
      continue;
    }
    const allocation = record(req, ip, false, req.mac);
    return {
      state: {
        ...state,
        allocations: [...state.allocations, allocation],
        lastPosition: { ...state.lastPosition, [range.subnet.toString()]: ip.toString() },
      },
      allocation,
    };
  }
  throw new IpamError('exhausted', full.join('; '));
}

/** The next free address after `last`, wrapping; or a sentence saying the range is full. */
function nextFree(range: Range, held: Set<bigint>, last: string | undefined): IP | string {
  const s = range.subnet;
  const infra = infrastructure(range).values;
  let usable = s.size;
  for (const v of infra) if (s.contains(IP.of(s.family, v))) usable -= 1n;
  let taken = 0n;
  for (const v of held) if (!infra.has(v) && s.contains(IP.of(s.family, v))) taken += 1n;
  if (taken >= usable) {
    return `no free address in ${s}: it has ${usable} usable address${usable === 1n ? '' : 'es'} and ${taken} ${taken === 1n ? 'is' : 'are'} held`;
  }
  const first = s.ip.value;
  const end = s.last.value;
  let lastValue: bigint | undefined;
  if (last !== undefined) {
    const ip = IP.parse(last);
    if (s.contains(ip)) lastValue = ip.value;
  }
  // At most taken + infrastructure + 1 steps: each step passes a held address or finds a free one.
  let v = lastValue === undefined || lastValue >= end ? first : lastValue + 1n;
  for (;;) {
    if (!infra.has(v) && !held.has(v)) return IP.of(s.family, v);
    v = v >= end ? first : v + 1n;
  }
}

/**
 * Frees the addresses of a container (of one interface when `ifname` is
 * given). A pinned address whose pod is known becomes a reservation for that
 * pod, so the pod gets it back when it is recreated. Releasing what is not
 * there changes nothing (DEL is idempotent).
 */
export function release(state: IpamState, containerId: string, ifname: string | undefined, now: Date): { state: IpamState; released: Allocation[] } {
  const released = state.allocations.filter((a) => a.containerId === containerId && (ifname === undefined || a.ifname === ifname));
  if (released.length === 0) return { state, released };
  return { state: releaseAllocations(state, released, now), released };
}

/** Removes these allocations (by identity), keeping pinned ones as reservations. */
export function releaseAllocations(state: IpamState, gone: Allocation[], now: Date): IpamState {
  const set = new Set(gone);
  const reservations: Reservation[] = [...state.reservations];
  for (const a of gone) {
    if (!a.pinned || !a.pod) continue;
    const r: Reservation = { address: a.address, family: a.family, pod: { ...a.pod }, since: now.toISOString() };
    if (a.mac) r.mac = a.mac;
    reservations.push(r);
  }
  return { ...state, allocations: state.allocations.filter((a) => !set.has(a)), reservations };
}
