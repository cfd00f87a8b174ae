// The bgp backend's keys of the Backend section. Everything here ends up in
// BIRD's config text, so values are checked strictly: a value BIRD would
// misread (a quote in a password) is refused here, never escaped by hope.
import { ConfigError, confNetworks, type NetConf } from '../../src/config/netconf.js';
import { isJsonObject, jsonType, optionalInteger, optionalString, rejectUnknownKeys, type JsonObject } from '../../src/config/fields.js';
import { Cidr, IP, type Family } from '../../src/core/cidr.js';

export type BgpTopology = 'mesh' | 'reflectors';

export interface BgpExternalPeer {
  peerIP: IP;
  asn: number;
  /** TCP MD5 key (RFC 2385); printable ASCII without a double quote. */
  password?: string;
}

export interface BgpTimers {
  /** Seconds; BIRD's hold time (a peer silent this long is dropped). */
  holdTime: number;
  keepaliveTime: number;
  /** Seconds to wait for a TCP connect to a peer that does not answer. */
  connectRetryTime: number;
}

export interface BgpOptions {
  asn: number;
  topology: BgpTopology;
  /** Node names or PublicIPs (as written, IPs normalised) of the route reflectors. */
  routeReflectors: string[];
  /** Shared `rr cluster id` of the reflectors, IPv4 dotted form. */
  clusterID: string;
  externalPeers: BgpExternalPeer[];
  /** The only prefixes (with their more-specifics) accepted from external peers; never this node's own subnet. */
  allowedPrefixes: Cidr[];
  timers: BgpTimers;
}

const WHERE = 'Backend.';
const KEYS = ['ASN', 'Topology', 'RouteReflectors', 'ClusterID', 'ExternalPeers', 'AllowedPrefixes', 'KeepaliveTime', 'HoldTime', 'ConnectRetryTime'];
const PEER_KEYS = ['PeerIP', 'ASN', 'Password'];
const TOPOLOGIES: readonly BgpTopology[] = ['mesh', 'reflectors'];

/** Calico's default private ASN; an operator who just says "bgp" gets a working cluster. */
const DEFAULT_ASN = 64512;
const AS_TRANS = 23456;
const MAX_ASN = 4294967295;
/** Linux TCP_MD5SIG_MAXKEYLEN. */
const MAX_PASSWORD_BYTES = 80;
/** Kubernetes node names are DNS subdomains. */
const NODE_NAME = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/i;

const DEFAULT_TIMERS: BgpTimers = { holdTime: 30, keepaliveTime: 10, connectRetryTime: 5 };

/**
 * `raw` is the Backend section without its Type key. With the whole net-conf,
 * addresses and prefixes are also checked against the families it runs.
 */
export function parseBgpOptions(raw: JsonObject, conf?: NetConf): BgpOptions {
  const options = parseKeys(raw);
  return conf ? checkBgpFamilies(options, confNetworks(conf).map((n) => n.family)) : options;
}

function parseKeys(raw: JsonObject): BgpOptions {
  rejectUnknownKeys(raw, KEYS, WHERE);
  const asn = raw.ASN === undefined ? DEFAULT_ASN : parseAsn(raw.ASN, `${WHERE}ASN`);
  const topology = parseTopology(raw);
  const routeReflectors = parseReflectors(raw.RouteReflectors, topology);
  const clusterID = parseClusterID(raw, topology, asn);
  return {
    asn,
    topology,
    routeReflectors,
    clusterID,
    externalPeers: parseExternalPeers(raw.ExternalPeers),
    allowedPrefixes: parseAllowedPrefixes(raw.AllowedPrefixes),
    timers: parseTimers(raw),
  };
}

/**
 * Addresses and prefixes must be of a family the cluster runs (Network, and
 * IPv6Network with EnableIPv6): one of another family would get no session
 * and no filter, and silently do nothing. Each family's sessions take only
 * its own entries, so a dual-stack cluster lists both. Throws ConfigError.
 */
export function checkBgpFamilies(options: BgpOptions, families: readonly Family[]): BgpOptions {
  const runs = (family: Family): boolean => families.includes(family);
  const fix = (family: Family): string =>
    family === 6 ? 'set EnableIPv6 and IPv6Network to run IPv6, or remove it' : 'the cluster runs IPv6 only; remove it';
  options.allowedPrefixes.forEach((cidr, i) => {
    if (!runs(cidr.family)) throw new ConfigError(`${WHERE}AllowedPrefixes[${i}] ${cidr} is IPv${cidr.family}, a family the cluster does not run; ${fix(cidr.family)}`);
  });
  options.externalPeers.forEach((peer, i) => {
    const family = peer.peerIP.family;
    if (!runs(family)) throw new ConfigError(`${WHERE}ExternalPeers[${i}].PeerIP ${peer.peerIP} is IPv${family}, a family the cluster does not run; ${fix(family)}`);
  });
  options.routeReflectors.forEach((entry, i) => {
    const family = reflectorAddress(entry)?.family;
    if (family !== undefined && !runs(family)) throw new ConfigError(`${WHERE}RouteReflectors[${i}] ${entry} is IPv${family}, a family the cluster does not run; ${fix(family)}`);
  });
  return options;
}

/** An AS number: 1..4294967295 without AS_TRANS; a decimal string is accepted too. */
function parseAsn(value: unknown, field: string): number {
  const n = typeof value === 'string' && /^\d{1,12}$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n)) {
    throw new ConfigError(`${field} must be an integer AS number, got ${jsonType(value)} ${shown(value)}`);
  }
  if (n === 0) throw new ConfigError(`${field} 0 is reserved; use 1..${MAX_ASN}, e.g. a private ASN 64512-65534`);
  if (n === AS_TRANS) throw new ConfigError(`${field} 23456 is AS_TRANS, reserved for 4-byte AS transition; pick another ASN`);
  if (n < 0 || n > MAX_ASN) throw new ConfigError(`${field} ${n} is out of range 1..${MAX_ASN}`);
  return n;
}

function parseTopology(raw: JsonObject): BgpTopology {
  const value = optionalString(raw, 'Topology', WHERE);
  if (value === undefined) return raw.RouteReflectors === undefined ? 'mesh' : 'reflectors';
  if (!(TOPOLOGIES as readonly string[]).includes(value)) {
    throw new ConfigError(`${WHERE}Topology ${shown(value)} is not one of ${TOPOLOGIES.map((t) => `"${t}"`).join(', ')}`);
  }
  return value as BgpTopology;
}

function parseReflectors(value: unknown, topology: BgpTopology): string[] {
  const field = `${WHERE}RouteReflectors`;
  if (value === undefined) {
    if (topology === 'reflectors') throw new ConfigError(`${field} is required with Topology "reflectors": list node names or PublicIPs of two or more nodes`);
    return [];
  }
  if (topology === 'mesh') throw new ConfigError(`${field} is set but Topology is "mesh"; set Topology to "reflectors" or remove ${field}`);
  const list = stringList(value, field);
  if (list.length === 0) throw new ConfigError(`${field} is empty: list node names or PublicIPs of the reflector nodes`);
  const seen = new Set<string>();
  return list.map((entry, i) => {
    const name = normaliseReflector(entry, `${field}[${i}]`);
    const key = name.toLowerCase();
    if (seen.has(key)) throw new ConfigError(`${field} lists ${shown(entry)} twice`);
    seen.add(key);
    return name;
  });
}

/** The address a RouteReflectors entry names, undefined for a node name. */
export function reflectorAddress(entry: string): IP | undefined {
  try {
    return IP.parse(entry);
  } catch {
    return undefined;
  }
}

function normaliseReflector(entry: string, field: string): string {
  try {
    return IP.parse(entry).toString();
  } catch {
    if (NODE_NAME.test(entry)) return entry;
    throw new ConfigError(`${field} ${shown(entry)} is neither an IP address nor a node name`);
  }
}

function parseClusterID(raw: JsonObject, topology: BgpTopology, asn: number): string {
  const value = optionalString(raw, 'ClusterID', WHERE);
  if (value === undefined) return asnAsId(asn);
  if (topology !== 'reflectors') throw new ConfigError(`${WHERE}ClusterID applies to Topology "reflectors" only; remove it`);
  let ip: IP;
  try {
    ip = IP.parse(value);
  } catch {
    throw new ConfigError(`${WHERE}ClusterID ${shown(value)} must be in IPv4 dotted form, e.g. "10.0.0.1"`);
  }
  if (ip.family !== 4) throw new ConfigError(`${WHERE}ClusterID ${shown(value)} must be in IPv4 dotted form, e.g. "10.0.0.1"`);
  if (ip.value === 0n) throw new ConfigError(`${WHERE}ClusterID 0.0.0.0 is not a valid cluster id`);
  return ip.toString();
}

/** The default cluster id: the ASN as a 32-bit number, the same on every node without coordination. */
function asnAsId(asn: number): string {
  return IP.of(4, BigInt(asn)).toString();
}

function parseExternalPeers(value: unknown): BgpExternalPeer[] {
  const field = `${WHERE}ExternalPeers`;
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new ConfigError(`${field} must be an array of {PeerIP, ASN, Password?}, got ${jsonType(value)}`);
  const seen = new Set<string>();
  return value.map((item: unknown, i) => {
    const where = `${field}[${i}].`;
    if (!isJsonObject(item)) throw new ConfigError(`${field}[${i}] must be an object {PeerIP, ASN, Password?}, got ${jsonType(item)}`);
    rejectUnknownKeys(item, PEER_KEYS, where);
    const peerIP = parsePeerIP(item.PeerIP, `${where}PeerIP`);
    const key = peerIP.toString();
    if (seen.has(key)) throw new ConfigError(`${field} lists PeerIP ${key} twice`);
    seen.add(key);
    if (item.ASN === undefined) throw new ConfigError(`${where}ASN is required`);
    const peer: BgpExternalPeer = { peerIP, asn: parseAsn(item.ASN, `${where}ASN`) };
    const password = optionalString(item, 'Password', where);
    if (password !== undefined) peer.password = checkPassword(password, `${where}Password`);
    return peer;
  });
}

function parsePeerIP(value: unknown, field: string): IP {
  if (typeof value !== 'string') throw new ConfigError(`${field} must be an IP address string, got ${jsonType(value)} ${shown(value)}`);
  let ip: IP;
  try {
    ip = IP.parse(value);
  } catch {
    throw new ConfigError(`${field} ${shown(value)} is not an IP address`);
  }
  if (ip.value === 0n) throw new ConfigError(`${field} ${ip} is the unspecified address; give the peer's own address`);
  return ip;
}

/**
 * BIRD strings have no escapes: a double quote ends the string and a newline
 * is an error, so such a password cannot be written at all and is refused.
 */
function checkPassword(password: string, field: string): string {
  if (password === '') throw new ConfigError(`${field} is empty; remove the key for no authentication`);
  if (password.includes('"')) throw new ConfigError(`${field} contains a double quote, which BIRD's config syntax cannot carry; choose a password without "`);
  if (!/^[\x20-\x7e]+$/.test(password)) throw new ConfigError(`${field} must be printable ASCII (no newlines, tabs or control characters)`);
  if (password.length > MAX_PASSWORD_BYTES) throw new ConfigError(`${field} is ${password.length} characters; TCP MD5 keys are at most ${MAX_PASSWORD_BYTES}`);
  return password;
}

function parseAllowedPrefixes(value: unknown): Cidr[] {
  const field = `${WHERE}AllowedPrefixes`;
  if (value === undefined) return [];
  const seen = new Set<string>();
  return stringList(value, field).map((text, i) => {
    let cidr: Cidr;
    try {
      cidr = Cidr.parse(text);
    } catch (err) {
      throw new ConfigError(`${field}[${i}]: ${(err as Error).message}`);
    }
    if (seen.has(cidr.toString())) throw new ConfigError(`${field} lists ${cidr} twice`);
    seen.add(cidr.toString());
    return cidr;
  });
}

function parseTimers(raw: JsonObject): BgpTimers {
  const holdTime = optionalInteger(raw, 'HoldTime', { min: 3, max: 3600 }, WHERE) ?? DEFAULT_TIMERS.holdTime;
  const keepalive = optionalInteger(raw, 'KeepaliveTime', { min: 1, max: 1200 }, WHERE);
  const keepaliveTime = keepalive ?? Math.max(1, Math.floor(holdTime / 3));
  if (keepaliveTime >= holdTime) {
    throw new ConfigError(`${WHERE}KeepaliveTime ${keepaliveTime} must be shorter than HoldTime ${holdTime} (one third of it is usual)`);
  }
  const connectRetryTime = optionalInteger(raw, 'ConnectRetryTime', { min: 1, max: 600 }, WHERE) ?? DEFAULT_TIMERS.connectRetryTime;
  return { holdTime, keepaliveTime, connectRetryTime };
}

function stringList(value: unknown, field: string): string[] {
  if (!Array.isArray(value)) throw new ConfigError(`${field} must be an array of strings, got ${jsonType(value)}`);
  return value.map((item: unknown, i) => {
    if (typeof item !== 'string') throw new ConfigError(`${field}[${i}] must be a string, got ${jsonType(item)} ${shown(item)}`);
    return item;
  });
}

function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}
