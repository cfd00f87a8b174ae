// Reading and writing one lease value: <prefix>/subnets/<ip>-<len> ->
// {"PublicIP","BackendType","BackendData","NodeName"}, and flannel's dual-stack
// form <prefix>/subnets/<ipv4>-<len>&<ipv6>-<len>, whose value adds
// "PublicIPv6" and "BackendV6Data". Everything read from etcd is untrusted:
// any node (or a person with etcdctl) can write garbage.
import { isUtf8 } from 'node:buffer';
import ipaddr from 'ipaddr.js';
import { BACKEND_TYPES, type NetConf, type SubnetRange } from '../../config/netconf.js';
import { Cidr, IP, type Family } from '../../core/cidr.js';
import { borrowedIPProblem, type Lease, type LeaseAttrs, type LeaseValue } from '../lease.js';
import { leaseKeyName, parseLeaseKeyName, type KeySubnets } from './layout.js';

/** Larger values are refused unread: a lease is a few hundred bytes. */
export const MAX_LEASE_VALUE_BYTES = 8 * 1024;
/** BackendData deeper than this is refused so no consumer recurses into a bomb. */
const MAX_JSON_DEPTH = 32;
const MAX_NODE_NAME = 253;
/** More borrowed addresses than this are ignored: a node runs far fewer pinned pods, and peers route each one. */
export const MAX_BORROWED_IPS = 128;
/** Problems with single borrowed entries named in one warning; the rest are counted. */
const NAMED_BORROWED_PROBLEMS = 3;

/**
 * A usable lease, or the reason there is none. `warning` says what was
 * dropped from a usable lease (a dual-stack lease's unusable IPv6 half).
 */
export type LeaseEntry = { ok: true; lease: Lease; warning?: string } | { ok: false; reason: string };

function invalid(reason: string): LeaseEntry {
  return { ok: false, reason };
}

/** Why `v` is unacceptable as JSON data (too deep, or a key that pollutes prototypes), or undefined. */
function jsonHazard(v: unknown, depth: number): string | undefined {
  if (v === null || typeof v !== 'object') return undefined;
  if (depth > MAX_JSON_DEPTH) return `BackendData is nested deeper than ${MAX_JSON_DEPTH} levels`;
  for (const [k, child] of Object.entries(v)) {
    if (k === '__proto__') return 'value contains a "__proto__" key';
    const bad = jsonHazard(child, depth + 1);
    if (bad) return bad;
  }
  return undefined;
}

/** Address ranges no node can be reached at. ("ipv4Mapped" is an IPv4 address spelled as IPv6.) */
const NOT_A_HOST = new Set(['unspecified', 'multicast', 'broadcast', 'loopback', 'ipv4Mapped']);

/** `field`'s value as a unicast address of `family`, or why it is not one. */
function parsePublicIP(field: 'PublicIP' | 'PublicIPv6', raw: unknown, family: Family, familyOf: string): IP | string {
  if (typeof raw !== 'string') return `${field} is ${raw === undefined ? 'missing' : `not a string (${typeof raw})`}`;
  let ip: IP;
  try {
    ip = IP.parse(raw);
  } catch {
    return `${field} "${raw.slice(0, 64)}" is not an IP address`;
  }
  if (ip.family !== family) return `${field} ${ip} is IPv${ip.family}, ${familyOf} is IPv${family}`;
  const range = ipaddr.parse(ip.toString()).range();
  if (NOT_A_HOST.has(range)) return `${field} ${ip} is not a unicast host address (${range})`;
  return ip;
}

/**
 * Why `subnet` cannot be a lease in `range`, or undefined. `keys` is the
 * prefix of the net-conf keys the range came from ("" or "IPv6"), for the message.
 */
function misfit(subnet: Cidr, range: SubnetRange, keys: '' | 'IPv6'): string | undefined {
  if (!range.network.covers(subnet)) return `subnet ${subnet} is outside ${keys}Network ${range.network}`;
  if (subnet.prefixLen !== range.subnetLen) return `subnet ${subnet} is not a /${range.subnetLen} (${keys}SubnetLen)`;
  return undefined;
}

function parseSubnetName(name: string, net: NetConf): KeySubnets | string {
  const subnets = parseLeaseKeyName(name);
  if (typeof subnets === 'string') return subnets;
  const { subnet, ipv6Subnet } = subnets;
  // One subnet, one spelling: otherwise "fd00:0::-64" and "fd00::-64" could both be leased.
  const canonical = leaseKeyName(subnet, ipv6Subnet);
  if (name !== canonical) return `key is not in canonical form (want ${canonical})`;
  return misfit(subnet, net, '') ?? subnets;
}

/**
 * The IPv6 half of a dual-stack lease, or why it is unusable. An unusable
 * half is dropped, not the lease: the IPv4 half stands on its own fields.
 * Its subnet is checked against IPv6Network when this cluster has one.
 */
function parseIPv6Half(field: (name: keyof LeaseValue) => unknown, ipv6Subnet: Cidr, range: SubnetRange | undefined): { publicIPv6: IP; backendV6Data: unknown } | string {
  const outside = range && misfit(ipv6Subnet, range, 'IPv6');
  if (outside) return outside;
  // flannel writes null for "no IPv6 address".
  const publicIPv6 = parsePublicIP('PublicIPv6', field('PublicIPv6') ?? undefined, 6, `the key's subnet ${ipv6Subnet}`);
  if (typeof publicIPv6 === 'string') return publicIPv6;
  return { publicIPv6, backendV6Data: field('BackendV6Data') ?? null };
}

/**
 * Validates one lease read from etcd. `name` is the key's part after
 * `<prefix>/subnets/` ("10.5.3.0-24"; anything with a "/" is not a subnet).
 * Pure: returns the lease or the reason it is unusable; never throws on data.
 * `expiresAt` is left for the caller.
 */
export function parseLeaseEntry(name: string, value: Buffer | Uint8Array | string, net: NetConf): LeaseEntry {
  const size = typeof value === 'string' ? Buffer.byteLength(value) : value.byteLength;
  if (size > MAX_LEASE_VALUE_BYTES) return invalid(`value is ${size} bytes (limit ${MAX_LEASE_VALUE_BYTES})`);
  const subnets = parseSubnetName(name, net);
  if (typeof subnets === 'string') return invalid(subnets);

  if (typeof value !== 'string' && !isUtf8(value)) return invalid('value is not UTF-8');
  const text = typeof value === 'string' ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return invalid('value is not JSON');
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return invalid('value is not a JSON object');
  const hazard = jsonHazard(doc, 0);
  if (hazard) return invalid(hazard);
  const obj = doc as Record<string, unknown>;
  const field = (name: keyof LeaseValue): unknown => (Object.hasOwn(obj, name) ? obj[name] : undefined);

  const publicIP = parsePublicIP('PublicIP', field('PublicIP'), net.network.family, 'the Network');
  if (typeof publicIP === 'string') return invalid(publicIP);

  const backendType = field('BackendType');
  if (typeof backendType !== 'string') return invalid('BackendType is missing or not a string');
  if (!(BACKEND_TYPES as readonly string[]).includes(backendType)) {
    return invalid(`unknown BackendType "${backendType.slice(0, 32)}" (known: ${BACKEND_TYPES.join(', ')})`);
  }

  const nodeName = field('NodeName');
  if (nodeName !== undefined && nodeName !== null) {
    if (typeof nodeName !== 'string') return invalid('NodeName is not a string');
    // Printed in tables and logs: no control characters, bounded length.
    if (nodeName.length > MAX_NODE_NAME || /[\p{Cc}]/u.test(nodeName)) return invalid('NodeName is too long or has control characters');
  }

  const attrs: LeaseAttrs = { publicIP, backendType, backendData: field('BackendData') ?? null };
  if (typeof nodeName === 'string' && nodeName !== '') attrs.nodeName = nodeName;
  const lease: Lease = { subnet: subnets.subnet, attrs };
  const warnings: string[] = [];
  // PublicIPv6 and BackendV6Data belong to the key's IPv6 subnet; without one they are not read (flannel ignores them too).
  if (subnets.ipv6Subnet) {
    const half = parseIPv6Half(field, subnets.ipv6Subnet, net.ipv6);
    if (typeof half === 'string') {
      warnings.push(`IPv6 half dropped: ${half}`);
    } else {
      lease.ipv6Subnet = subnets.ipv6Subnet;
      attrs.publicIPv6 = half.publicIPv6;
      if (half.backendV6Data !== null) attrs.backendV6Data = half.backendV6Data;
    }
  }
  const borrowed = parseBorrowedIPs(field('BorrowedIPs'), lease, net);
  if (borrowed.ips.length > 0) attrs.borrowedIPs = borrowed.ips;
  if (borrowed.problem) warnings.push(borrowed.problem);
  return warnings.length > 0 ? { ok: true, lease, warning: warnings.join('; ') } : { ok: true, lease };
}

/**
 * The usable entries of a lease's BorrowedIPs, and one line saying what was
 * ignored. A bad entry never costs the lease: its other fields stand alone.
 */
function parseBorrowedIPs(raw: unknown, lease: Lease, net: NetConf): { ips: Cidr[]; problem?: string } {
  if (raw === undefined || raw === null) return { ips: [] };
  if (!Array.isArray(raw)) return { ips: [], problem: `BorrowedIPs ignored: it is ${typeof raw}, not a list of host routes` };
  const problems: string[] = [];
  if (raw.length > MAX_BORROWED_IPS) problems.push(`${raw.length - MAX_BORROWED_IPS} past the limit of ${MAX_BORROWED_IPS}`);
  const ips: Cidr[] = [];
  const seen = new Set<string>();
  for (const entry of raw.slice(0, MAX_BORROWED_IPS)) {
    const why = borrowedEntryProblem(entry, lease, net, seen);
    if (typeof why === 'string') problems.push(why);
    else ips.push(why);
  }
  if (problems.length === 0) return { ips };
  const named = problems.slice(0, NAMED_BORROWED_PROBLEMS).join(', ');
  const more = problems.length > NAMED_BORROWED_PROBLEMS ? ` and ${problems.length - NAMED_BORROWED_PROBLEMS} more` : '';
  return { ips, problem: `BorrowedIPs entries ignored: ${named}${more}` };
}

/** One BorrowedIPs entry as a host route, or why it is ignored (`seen` holds the entries taken so far). */
function borrowedEntryProblem(entry: unknown, lease: Lease, net: NetConf, seen: Set<string>): Cidr | string {
  if (typeof entry !== 'string') return `an entry that is ${entry === null ? 'null' : typeof entry}, not a string`;
  const shown = JSON.stringify(entry.slice(0, 64));
  let ip: Cidr;
  try {
    ip = Cidr.parse(entry);
  } catch {
    return `${shown} (not a CIDR such as "10.244.3.17/32")`;
  }
  const problem = borrowedIPProblem(ip, lease, net);
  if (problem) return `${shown} (${problem})`;
  const key = ip.toKey();
  if (seen.has(key)) return `${shown} (listed twice)`;
  seen.add(key);
  return ip;
}

const given = (v: unknown): boolean => v !== undefined && v !== null;

/**
 * The wire form of attrs, in flannel's field order, empty fields omitted:
 * an IPv4 lease is {"PublicIP","BackendType","BackendData"}; with `publicIPv6`
 * it is flannel's dual-stack value, stored under leaseKeyName(v4, v6).
 */
export function formatLeaseValue(attrs: LeaseAttrs): string {
  const v6 = attrs.publicIPv6;
  const value: LeaseValue = {
    PublicIP: attrs.publicIP.toString(),
    ...(v6 ? { PublicIPv6: v6.toString() } : {}),
    BackendType: attrs.backendType,
    ...(given(attrs.backendData) ? { BackendData: attrs.backendData } : {}),
    ...(v6 && given(attrs.backendV6Data) ? { BackendV6Data: attrs.backendV6Data } : {}),
    ...(attrs.nodeName ? { NodeName: attrs.nodeName } : {}),
    ...(attrs.borrowedIPs && attrs.borrowedIPs.length > 0 ? { BorrowedIPs: attrs.borrowedIPs.map(String) } : {}),
  };
  return JSON.stringify(value);
}
