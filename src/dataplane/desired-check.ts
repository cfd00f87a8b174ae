// Desired state checked before anything is planned: every value that will
// reach the kernel is validated and put in one canonical form, and anything
// malformed or not weft's to manage is refused by name. The same normalisers
// canonicalise what the kernel reports, so the two sides compare equal.
import { Cidr, IP, type Family } from '../core/cidr.js';
import type { Addr, DesiredState, Fdb, Neigh, VxlanLinkSpec } from './state.js';

const MAC_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;
// Kernel rule (dev_valid_name) plus a conservative charset: names go into batch lines verbatim.
const DEV_RE = /^[A-Za-z0-9_.-]{1,15}$/;

function isDevName(name: unknown): name is string {
  return typeof name === 'string' && DEV_RE.test(name) && name !== '.' && name !== '..';
}

export function normaliseMac(text: unknown): string | undefined {
  if (typeof text !== 'string') return undefined;
  const mac = text.toLowerCase();
  return MAC_RE.test(mac) ? mac : undefined;
}

/**
 * Canonical forms already worked out. Every pass normalises every kernel
 * route and every desired entry, and they are the same strings pass after
 * pass (a thousand peers: thousands of parses a pass). Bounded.
 */
const canonical = new Map<string, string | undefined>();
const CANONICAL_LIMIT = 100_000;

function remembered(key: string, make: () => string | undefined): string | undefined {
  if (canonical.has(key)) return canonical.get(key);
  const value = make();
  if (canonical.size >= CANONICAL_LIMIT) canonical.clear();
  canonical.set(key, value);
  return value;
}

export function normaliseIP(text: unknown): string | undefined {
  if (typeof text !== 'string') return undefined;
  return remembered(`ip|${text}`, () => parsedIP(text));
}

function parsedIP(text: string): string | undefined {
  try {
    return IP.parse(text).toString();
  } catch {
    return undefined;
  }
}

/**
 * A route destination as one canonical CIDR: "default" becomes 0.0.0.0/0 or
 * ::/0 (the family must then be given), a bare host address gets /32 or /128.
 */
export function normaliseDst(text: unknown, family?: Family): string | undefined {
  if (typeof text !== 'string') return undefined;
  return remembered(`dst${family ?? ''}|${text}`, () => parsedDst(text, family));
}

function parsedDst(text: string, family?: Family): string | undefined {
  if (text === 'default') return family === 6 ? '::/0' : family === 4 ? '0.0.0.0/0' : undefined;
  try {
    if (!text.includes('/')) {
      const ip = IP.parse(text);
      return `${ip}/${ip.bits}`;
    }
    return Cidr.parse(text).toString();
  } catch {
    return undefined;
  }
}

/** An interface address "ip/len" (host bits allowed), canonical. */
export function normaliseAddr(text: unknown): string | undefined {
  if (typeof text !== 'string') return undefined;
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const ip = normaliseIP(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (!ip || !/^\d{1,3}$/.test(lenText)) return undefined;
  const len = Number(lenText);
  return len <= (ip.includes(':') ? 128 : 32) ? `${ip}/${len}` : undefined;
}

/** A value from desired state, safe to put in a log line (quoted, bounded). */
function quote(v: unknown): string {
  return JSON.stringify(String(v).slice(0, 48));
}

/** The family of a canonical address or CIDR. */
export function familyOf(cidrOrIp: string): Family {
  return cidrOrIp.includes(':') ? 6 : 4;
}

export interface DesiredRoute {
  dst: string;
  via?: string;
  dev?: string;
  onlink: boolean;
}

/** What makes a vxlan device the one wanted: a device that differs in any of these is recreated. */
export type VxlanTunnel = Pick<VxlanLinkSpec, 'vni' | 'port' | 'local' | 'dev'>;

export interface WantedVxlan {
  name: string;
  /** 0: the kernel's default. */
  mtu: number;
  mac?: string;
  tunnel: VxlanTunnel;
}

/** Desired state after checking, keyed the way the diff looks entries up. */
export interface Wanted {
  vxlan: Map<string, WantedVxlan>;
  tun: Map<string, { name: string; mtu: number }>;
  addrs: Map<string, Addr>;
  neighs: Map<string, Neigh>;
  fdb: Map<string, Fdb>;
  routes: Map<string, DesiredRoute>;
}

/** Validates and normalises desired state; anything malformed or not weft's to manage is rejected by name. */
export function normaliseDesired(desired: DesiredState, prefix: string, rejected: string[]): Wanted {
  const w: Wanted = { vxlan: new Map(), tun: new Map(), addrs: new Map(), neighs: new Map(), fdb: new Map(), routes: new Map() };
  for (const link of desired.links) {
    const name = link.name;
    if (!isDevName(name) || !name.startsWith(prefix)) {
      rejected.push(`link ${quote(name)}: not a valid device name starting with "${prefix}"`);
      continue;
    }
    const mtu = Number.isInteger(link.mtu) && link.mtu >= 68 && link.mtu <= 65535 ? link.mtu : 0;
    if (link.spec.kind === 'tun') {
      w.tun.set(name, { name, mtu });
      continue;
    }
    const s = link.spec;
    const local = normaliseIP(s.local);
    const mac = link.mac === undefined ? undefined : normaliseMac(link.mac);
    if (!Number.isInteger(s.vni) || s.vni < 0 || s.vni > 0xffffff || !Number.isInteger(s.port) || s.port < 1 || s.port > 65535
      || !local || !isDevName(s.dev) || (link.mac !== undefined && !mac)) {
      rejected.push(`link ${name}: bad vxlan spec (vni, port, local, dev or mac)`);
      continue;
    }
    w.vxlan.set(name, { name, mtu, ...(mac ? { mac } : {}), tunnel: { vni: s.vni, port: s.port, local, dev: s.dev } });
  }
  const managed = (dev: string): boolean => w.vxlan.has(dev) || w.tun.has(dev);
  for (const a of desired.addrs) {
    const cidr = normaliseAddr(a.cidr);
    if (!cidr || !managed(a.dev)) {
      rejected.push(`address ${quote(a.cidr)} on ${quote(a.dev)}: ${cidr ? 'device is not a desired weft link' : 'not ip/len'}`);
      continue;
    }
    w.addrs.set(`${a.dev}|${cidr}`, { dev: a.dev, cidr });
  }
  for (const n of desired.neighs) {
    const ip = normaliseIP(n.ip);
    const mac = normaliseMac(n.mac);
    if (!ip || !mac || !managed(n.dev)) {
      rejected.push(`neighbour ${quote(n.ip)} on ${quote(n.dev)}: ${ip && mac ? 'device is not a desired weft link' : 'bad ip or mac'}`);
      continue;
    }
    w.neighs.set(`${n.dev}|${ip}`, { dev: n.dev, ip, mac });
  }
  for (const f of desired.fdb) {
    const mac = normaliseMac(f.mac);
    const dst = normaliseIP(f.dst);
    if (!mac || !dst || !w.vxlan.has(f.dev)) {
      rejected.push(`fdb ${quote(f.mac)} on ${quote(f.dev)}: ${mac && dst ? 'device is not a desired weft vxlan link' : 'bad mac or dst'}`);
      continue;
    }
    w.fdb.set(`${f.dev}|${mac}`, { dev: f.dev, mac, dst });
  }
  for (const r of desired.routes) {
    const dst = normaliseDst(r.dst);
    const via = r.via === undefined ? undefined : normaliseIP(r.via);
    const devOk = r.dev === undefined || (isDevName(r.dev) && (!r.dev.startsWith(prefix) || managed(r.dev)));
    const why = !dst ? 'destination is not a CIDR'
      : r.via !== undefined && (!via || familyOf(via) !== familyOf(dst)) ? 'gateway is not an address of the same family'
      : !devOk ? 'device is not valid or not a desired weft link'
      : !via && r.dev === undefined ? 'needs a gateway or a device'
      : undefined;
    if (why || !dst) {
      rejected.push(`route ${quote(r.dst)}: ${why}`);
      continue;
    }
    w.routes.set(dst, { dst, ...(via ? { via } : {}), ...(r.dev !== undefined ? { dev: r.dev } : {}), onlink: r.onlink === true });
  }
  return w;
}
