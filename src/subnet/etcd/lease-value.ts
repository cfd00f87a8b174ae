// Reading and writing one lease value: <prefix>/subnets/<ip>-<len> ->
// {"PublicIP","BackendType","BackendData","NodeName"}. Everything read from
// etcd is untrusted: any node (or a person with etcdctl) can write garbage.
import { isUtf8 } from 'node:buffer';
import ipaddr from 'ipaddr.js';
import { BACKEND_TYPES, type NetConf } from '../../config/netconf.js';
import { Cidr, IP } from '../../core/cidr.js';
import type { Lease, LeaseAttrs, LeaseValue } from '../lease.js';

/** Larger values are refused unread: a lease is a few hundred bytes. */
export const MAX_LEASE_VALUE_BYTES = 8 * 1024;
/** BackendData deeper than this is refused so no consumer recurses into a bomb. */
const MAX_JSON_DEPTH = 32;
const MAX_NODE_NAME = 253;

export type LeaseEntry = { ok: true; lease: Lease } | { ok: false; reason: string };

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

function parsePublicIP(raw: unknown, net: NetConf): IP | string {
  if (typeof raw !== 'string') return `PublicIP is ${raw === undefined ? 'missing' : `not a string (${typeof raw})`}`;
  let ip: IP;
  try {
    ip = IP.parse(raw);
  } catch {
    return `PublicIP "${raw.slice(0, 64)}" is not an IP address`;
  }
  if (ip.family !== net.network.family) return `PublicIP ${ip} is IPv${ip.family}, the Network is IPv${net.network.family}`;
  const range = ipaddr.parse(ip.toString()).range();
  if (range === 'unspecified' || range === 'multicast' || range === 'broadcast' || range === 'loopback') {
    return `PublicIP ${ip} is not a unicast host address (${range})`;
  }
  return ip;
}

function parseSubnetName(name: string, net: NetConf): Cidr | string {
  let subnet: Cidr;
  try {
    subnet = Cidr.fromKey(name);
  } catch {
    return 'key is not a subnet (want <ip>-<len>)';
  }
  // One subnet, one spelling: otherwise "fd00:0::-64" and "fd00::-64" could both be leased.
  if (name !== subnet.toKey()) return `key is not in canonical form (want ${subnet.toKey()})`;
  if (!net.network.covers(subnet)) return `subnet ${subnet} is outside Network ${net.network}`;
  if (subnet.prefixLen !== net.subnetLen) return `subnet ${subnet} is not a /${net.subnetLen} (SubnetLen)`;
  return subnet;
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
  const subnet = parseSubnetName(name, net);
  if (typeof subnet === 'string') return invalid(subnet);

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

  const publicIP = parsePublicIP(field('PublicIP'), net);
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
  return { ok: true, lease: { subnet, attrs } };
}

/** The wire form of attrs, as flannel writes it (BackendData omitted when empty). */
export function formatLeaseValue(attrs: LeaseAttrs): string {
  const value: LeaseValue = { PublicIP: attrs.publicIP.toString(), BackendType: attrs.backendType };
  if (attrs.backendData !== undefined && attrs.backendData !== null) value.BackendData = attrs.backendData;
  if (attrs.nodeName) value.NodeName = attrs.nodeName;
  return JSON.stringify(value);
}
