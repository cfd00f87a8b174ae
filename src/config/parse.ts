// net-conf.json -> NetConf: flannel's field names and defaults, strict about
// everything else so a typo fails at `weft config validate`, not on a node.
import { closeSync, openSync, readSync } from 'node:fs';
import { WeftError } from '../errors.js';
import { Cidr, IP } from '../core/cidr.js';
import {
  isJsonObject,
  jsonType,
  optionalBoolean,
  optionalInteger,
  optionalString,
  rejectUnknownKeys,
  type JsonObject,
} from './fields.js';
import { BACKEND_TYPES, ConfigError, type BackendConf, type BackendType, type NetConf } from './netconf.js';

export const MAX_NETCONF_BYTES = 64 * 1024;

/** Longest subnet a node may lease: room for a network, a gateway, one pod and broadcast. */
const LONGEST_SUBNET = 30;

const KNOWN_KEYS = ['Network', 'SubnetLen', 'SubnetMin', 'SubnetMax', 'Backend', 'EnableIPv4', 'EnableIPv6', 'EnableNFTables'];

/** flannel keys weft does not implement: named, so they are not reported as typos. */
const UNSUPPORTED_KEYS: Record<string, string> = {
  IPv6Network: 'IPv6 is not supported yet',
  IPv6SubnetLen: 'IPv6 is not supported yet',
  IPv6SubnetMin: 'IPv6 is not supported yet',
  IPv6SubnetMax: 'IPv6 is not supported yet',
  IPv6Networks: 'IPv6 is not supported yet',
  Networks: 'several cluster networks are not supported; use one Network',
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

  checkFamilyKeys(doc);
  rejectUnknownKeys(doc, KNOWN_KEYS);
  optionalBoolean(doc, 'EnableNFTables'); // weft always uses nftables; accepted for flannel configs

  const network = parseNetwork(doc);
  const subnetLen = parseSubnetLen(doc, network);
  const count = 1n << BigInt(subnetLen - network.prefixLen);
  const subnetMin = parseBound(doc, 'SubnetMin', network, subnetLen) ?? network.subnet(subnetLen, 1n);
  const subnetMax = parseBound(doc, 'SubnetMax', network, subnetLen) ?? network.subnet(subnetLen, count - 1n);
  if (subnetMin.ip.value > subnetMax.ip.value) {
    const why = doc.SubnetMin === undefined ? ' (the default: the first subnet is skipped)' : '';
    throw new ConfigError(`SubnetMin ${subnetMin}${why} is above SubnetMax ${subnetMax}: no subnet left to lease`);
  }
  return { network, subnetLen, subnetMin, subnetMax, backend: parseBackend(doc) };
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

function checkFamilyKeys(doc: JsonObject): void {
  for (const [key, reason] of Object.entries(UNSUPPORTED_KEYS)) {
    if (key in doc) throw new ConfigError(`${key}: ${reason}; remove it`);
  }
  if (optionalBoolean(doc, 'EnableIPv6') === true) throw new ConfigError('EnableIPv6: IPv6 is not supported yet; remove it');
  if (optionalBoolean(doc, 'EnableIPv4') === false) {
    throw new ConfigError('EnableIPv4 false is not supported: weft needs an IPv4 Network; remove it');
  }
}

function parseNetwork(doc: JsonObject): Cidr {
  const text = optionalString(doc, 'Network');
  if (text === undefined) throw new ConfigError('Network is required, e.g. "Network": "10.244.0.0/16"');
  let network: Cidr;
  try {
    network = Cidr.parse(text);
  } catch (err) {
    throw new ConfigError(`Network ${(err as Error).message}`);
  }
  if (network.family !== 4) throw new ConfigError(`Network ${network}: IPv6 is not supported yet; use an IPv4 Network`);
  return network;
}

function parseSubnetLen(doc: JsonObject, network: Cidr): number {
  const given = optionalInteger(doc, 'SubnetLen', { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER });
  if (given === undefined) {
    const len = network.prefixLen <= 22 ? 24 : network.prefixLen + 2;
    if (len > LONGEST_SUBNET) {
      throw new ConfigError(`Network ${network} is too small to split into node subnets; use /${LONGEST_SUBNET - 2} or wider`);
    }
    return len;
  }
  if (given > LONGEST_SUBNET) throw new ConfigError(`SubnetLen ${given} is longer than /${LONGEST_SUBNET}`);
  if (given <= network.prefixLen) {
    throw new ConfigError(`SubnetLen ${given} must be longer than the Network's /${network.prefixLen}`);
  }
  return given;
}

/** SubnetMin/SubnetMax: flannel writes an address ("10.5.1.0"); a CIDR of SubnetLen is accepted too. */
function parseBound(doc: JsonObject, key: 'SubnetMin' | 'SubnetMax', network: Cidr, subnetLen: number): Cidr | undefined {
  const text = optionalString(doc, key);
  if (text === undefined) return undefined;
  let ip: IP;
  try {
    if (text.includes('/')) {
      const cidr = Cidr.parse(text);
      if (cidr.prefixLen !== subnetLen) throw new Error(`is a /${cidr.prefixLen}, not a /${subnetLen} (SubnetLen)`);
      ip = cidr.ip;
    } else {
      ip = IP.parse(text);
    }
  } catch (err) {
    const msg = (err as Error).message;
    throw new ConfigError(`${key} ${msg.startsWith('"') ? msg : `${JSON.stringify(text.slice(0, 64))} ${msg}`}`);
  }
  if (!network.contains(ip)) throw new ConfigError(`${key} ${ip} is outside Network ${network}`);
  const subnet = Cidr.of(ip, subnetLen);
  if (!subnet.ip.equals(ip)) {
    throw new ConfigError(`${key} ${ip} is not aligned to SubnetLen /${subnetLen} (did you mean ${subnet.ip}?)`);
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
