// net-conf.json -> NetConf: flannel's field names and defaults, strict about
// everything else so a typo fails at `weft config validate`, not on a node.
import { closeSync, openSync, readSync } from 'node:fs';
import { WeftError } from '../errors.js';
import { Cidr, IP, type Family } from '../core/cidr.js';
import {
  isJsonObject,
  jsonType,
  optionalBoolean,
  optionalInteger,
  optionalString,
  rejectUnknownKeys,
  type JsonObject,
} from './fields.js';
import { BACKEND_TYPES, ConfigError, type BackendConf, type BackendType, type NetConf, type SubnetRange } from './netconf.js';

export const MAX_NETCONF_BYTES = 64 * 1024;

/**
 * A node subnet keeps at least this many host bits: four addresses (network,
 * gateway, one pod, and broadcast in IPv4), flannel's limit in both families.
 */
const MIN_HOST_BITS = 2;

/** The keys that describe one address family's range, and that family's defaults. */
interface FamilyKeys {
  family: Family;
  network: string;
  subnetLen: string;
  subnetMin: string;
  subnetMax: string;
  /** SubnetLen when the network holds at least four subnets of it (else the network's prefix + 2). */
  defaultSubnetLen: number;
  example: string;
  /** When the network key is required, as the error line says it. */
  requiredWhen: string;
}

const IPV4_KEYS: FamilyKeys = {
  family: 4,
  network: 'Network',
  subnetLen: 'SubnetLen',
  subnetMin: 'SubnetMin',
  subnetMax: 'SubnetMax',
  defaultSubnetLen: 24,
  example: '10.244.0.0/16',
  requiredWhen: '',
};

const IPV6_KEYS: FamilyKeys = {
  family: 6,
  network: 'IPv6Network',
  subnetLen: 'IPv6SubnetLen',
  subnetMin: 'IPv6SubnetMin',
  subnetMax: 'IPv6SubnetMax',
  defaultSubnetLen: 64,
  example: 'fd00:10:244::/56',
  requiredWhen: ' when EnableIPv6 is true',
};

const rangeKeys = (keys: FamilyKeys): string[] => [keys.network, keys.subnetLen, keys.subnetMin, keys.subnetMax];

const KNOWN_KEYS = [...rangeKeys(IPV4_KEYS), ...rangeKeys(IPV6_KEYS), 'Backend', 'EnableIPv4', 'EnableIPv6', 'EnableNFTables'];

/** flannel keys weft does not implement: named, so they are not reported as typos. */
const UNSUPPORTED_KEYS: Record<string, string> = {
  Networks: 'several cluster networks are not supported; use one Network',
  IPv6Networks: 'several cluster networks are not supported; use one IPv6Network',
};

function tooLarge(): ConfigError {
  return new ConfigError(`larger than the ${MAX_NETCONF_BYTES / 1024} KiB limit; is this the right file?`);
}

export function parseNetConf(text: string): NetConf {
  if (typeof text !== 'string') throw new ConfigError(`expected JSON text, got ${jsonType(text)}`);
  if (Buffer.byteLength(text, 'utf8') > MAX_NETCONF_BYTES) throw tooLarge();
  let doc: unknown;
  try {
    doc = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    const reason = (err as Error).message.replace(/\s+/g, ' ').slice(0, 120);
    throw new ConfigError(`not valid JSON (${reason})`);
  }
  if (!isJsonObject(doc)) throw new ConfigError(`must be a JSON object, got ${jsonType(doc)}`);

  rejectUnsupportedKeys(doc);
  const { ipv4, ipv6 } = enabledFamilies(doc);
  rejectUnknownKeys(doc, KNOWN_KEYS);
  optionalBoolean(doc, 'EnableNFTables'); // weft always uses nftables; accepted for flannel configs

  // IPv6-only: the IPv6 range is the primary (top-level) one.
  if (!ipv4) return { ...parseRange(doc, IPV6_KEYS), backend: parseBackend(doc) };
  return { ...parseRange(doc, IPV4_KEYS), ...(ipv6 ? { ipv6: parseRange(doc, IPV6_KEYS) } : {}), backend: parseBackend(doc) };
}

/** Reads and parses a net-conf.json file; a missing or unreadable file is one line. */
export function loadNetConfFile(path: string): NetConf {
  return parseNetConf(readNetConfFile(path));
}

/** The text of a net-conf.json file, read no further than the size limit. */
export function readNetConfFile(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw unreadable(path, err);
  }
  // One byte past the limit is enough to know; never read all of a huge file.
  const buf = new Uint8Array(MAX_NETCONF_BYTES + 1);
  let length = 0;
  try {
    while (length < buf.length) {
      const n = readSync(fd, buf, length, buf.length - length, null);
      if (n === 0) break;
      length += n;
    }
  } catch (err) {
    throw unreadable(path, err);
  } finally {
    closeSync(fd);
  }
  if (length > MAX_NETCONF_BYTES) throw tooLarge();
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, length));
  } catch {
    throw new ConfigError(`${path} is not UTF-8 text`);
  }
}

function unreadable(path: string, err: unknown): WeftError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new WeftError(`net-conf file ${path} does not exist`, 'pass the path of your net-conf.json');
  if (code === 'EACCES' || code === 'EPERM') {
    return new WeftError(`cannot read net-conf file ${path}: permission denied`, 'fix its mode or run as a user who can read it');
  }
  if (code === 'EISDIR') return new WeftError(`net-conf file ${path} is a directory`, 'pass the path of your net-conf.json');
  return new WeftError(`cannot read net-conf file ${path} (${code ?? (err as Error).message})`, 'check the path');
}

function rejectUnsupportedKeys(doc: JsonObject): void {
  for (const [key, reason] of Object.entries(UNSUPPORTED_KEYS)) {
    if (key in doc) throw new ConfigError(`${key}: ${reason}; remove it`);
  }
}

/**
 * EnableIPv4 and EnableIPv6 with flannel's defaults (true, false). flannel
 * ignores a disabled family's keys; weft refuses them, so a forgotten
 * EnableIPv6 does not quietly give an IPv4-only cluster, nor a forgotten
 * Network an IPv6-only one.
 */
function enabledFamilies(doc: JsonObject): { ipv4: boolean; ipv6: boolean } {
  const ipv4 = optionalBoolean(doc, 'EnableIPv4') ?? true;
  const ipv6 = optionalBoolean(doc, 'EnableIPv6') ?? false;
  if (!ipv4 && !ipv6) throw new ConfigError('EnableIPv4 and EnableIPv6 are both false: no address family left; enable one');
  const ignored = (!ipv6 ? rangeKeys(IPV6_KEYS).find((key) => key in doc) : undefined);
  if (ignored) throw new ConfigError(`${ignored} has no effect unless "EnableIPv6": true; add that, or remove the IPv6 keys`);
  const ignored4 = !ipv4 ? rangeKeys(IPV4_KEYS).find((key) => key in doc) : undefined;
  if (ignored4) throw new ConfigError(`${ignored4} has no effect when "EnableIPv4" is false (IPv6-only); remove it, or remove EnableIPv4`);
  return { ipv4, ipv6 };
}

/** One family's network and leasable range, checked the same way for IPv4 and IPv6. */
function parseRange(doc: JsonObject, keys: FamilyKeys): SubnetRange {
  const network = parseNetwork(doc, keys);
  const subnetLen = parseSubnetLen(doc, keys, network);
  const count = 1n << BigInt(subnetLen - network.prefixLen);
  const subnetMin = parseBound(doc, keys.subnetMin, keys, network, subnetLen) ?? network.subnet(subnetLen, 1n);
  const subnetMax = parseBound(doc, keys.subnetMax, keys, network, subnetLen) ?? network.subnet(subnetLen, count - 1n);
  if (subnetMin.ip.value > subnetMax.ip.value) {
    const why = doc[keys.subnetMin] === undefined ? ' (the default: the first subnet is skipped)' : '';
    throw new ConfigError(`${keys.subnetMin} ${subnetMin}${why} is above ${keys.subnetMax} ${subnetMax}: no subnet left to lease`);
  }
  return { network, subnetLen, subnetMin, subnetMax };
}

function parseNetwork(doc: JsonObject, keys: FamilyKeys): Cidr {
  const text = optionalString(doc, keys.network);
  if (text === undefined) throw new ConfigError(`${keys.network} is required${keys.requiredWhen}, e.g. "${keys.network}": "${keys.example}"`);
  let network: Cidr;
  try {
    network = Cidr.parse(text);
  } catch (err) {
    throw new ConfigError(`${keys.network} ${(err as Error).message}`);
  }
  if (network.family !== keys.family) {
    throw new ConfigError(
      `${keys.network} ${network} is an IPv${network.family} network; ${IPV4_KEYS.network} takes IPv4, ${IPV6_KEYS.network} takes IPv6`,
    );
  }
  return network;
}

function parseSubnetLen(doc: JsonObject, keys: FamilyKeys, network: Cidr): number {
  const longest = network.ip.bits - MIN_HOST_BITS;
  const given = optionalInteger(doc, keys.subnetLen, { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER });
  if (given === undefined) {
    const wanted = keys.defaultSubnetLen;
    const len = network.prefixLen <= wanted - 2 ? wanted : network.prefixLen + 2;
    if (len > longest) {
      throw new ConfigError(`${keys.network} ${network} is too small to split into node subnets; use /${longest - 2} or wider`);
    }
    return len;
  }
  if (given > longest) throw new ConfigError(`${keys.subnetLen} ${given} is longer than /${longest}`);
  if (given <= network.prefixLen) {
    throw new ConfigError(`${keys.subnetLen} ${given} must be longer than the ${keys.network}'s /${network.prefixLen}`);
  }
  return given;
}

/** SubnetMin/SubnetMax (either family): flannel writes an address ("10.5.1.0"); a CIDR of SubnetLen is accepted too. */
function parseBound(doc: JsonObject, key: string, keys: FamilyKeys, network: Cidr, subnetLen: number): Cidr | undefined {
  const text = optionalString(doc, key);
  if (text === undefined) return undefined;
  let ip: IP;
  try {
    if (text.includes('/')) {
      const cidr = Cidr.parse(text);
      if (cidr.prefixLen !== subnetLen) throw new Error(`is a /${cidr.prefixLen}, not a /${subnetLen} (${keys.subnetLen})`);
      ip = cidr.ip;
    } else {
      ip = IP.parse(text);
    }
  } catch (err) {
    const msg = (err as Error).message;
    throw new ConfigError(`${key} ${msg.startsWith('"') ? msg : `${JSON.stringify(text.slice(0, 64))} ${msg}`}`);
  }
  if (!network.contains(ip)) throw new ConfigError(`${key} ${ip} is outside ${keys.network} ${network}`);
  const subnet = Cidr.of(ip, subnetLen);
  if (!subnet.ip.equals(ip)) {
    throw new ConfigError(`${key} ${ip} is not aligned to ${keys.subnetLen} /${subnetLen} (did you mean ${subnet.ip}?)`);
  }
  return subnet;
}

function parseBackend(doc: JsonObject): BackendConf {
  const section = doc.Backend;
  if (section === undefined) throw new ConfigError('Backend is required, e.g. "Backend": {"Type": "vxlan"}');
  if (!isJsonObject(section)) throw new ConfigError(`Backend must be an object, got ${jsonType(section)}`);
  const { Type: type, ...raw } = section;
  if (type === undefined) throw new ConfigError(`Backend.Type is required; one of ${BACKEND_TYPES.join(', ')}`);
  if (typeof type !== 'string') throw new ConfigError(`Backend.Type must be a string, got ${jsonType(type)}`);
  if (!(BACKEND_TYPES as readonly string[]).includes(type)) {
    throw new ConfigError(`Backend.Type ${JSON.stringify(type.slice(0, 64))} is not a known backend; use one of ${BACKEND_TYPES.join(', ')}`);
  }
  // The backend's own keys are checked by its parser (backends/registry.ts checkBackendOptions).
  return { type: type as BackendType, raw };
}
