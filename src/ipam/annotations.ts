// The annotations a user writes to pin a pod's address and MAC. Each value is
// checked here, once; a bad one is one line naming the annotation, the value
// and the fix, which the CNI plugin returns as the pod's ADD error.
//
// --- README: pinned addresses (quoted from here) ---
// Pod annotations (kube mode):
//   weft.io/ip: "10.244.3.17"                  one address per family,
//   weft.io/ip: "10.244.3.17,2001:db8:3::17"   comma-separated
//   weft.io/mac: "02:42:0a:f4:03:11"           six colon-separated hex octets;
//                                              unicast, never multicast or all-zero
// StatefulSet (in spec.template.metadata.annotations, so every pod carries it):
//   weft.io/ip-pool: "10.244.3.10-10.244.3.19"             a range, first-last
//   weft.io/ip-pool: "10.244.3.10,10.244.3.12,10.244.3.14" or a list
//   weft.io/ip-pool: "10.244.3.10-10.244.3.19,2001:db8:3::10-2001:db8:3::19"
//       ranges and single addresses mix; each family is numbered on its own:
//       the pod with ordinal i (label apps.kubernetes.io/pod-index, else the
//       name's -i suffix) gets the i-th address of each family listed.
// Every address must lie in the cluster Network and must not be its node
// subnet's network, gateway or broadcast address. A pod carries either
// weft.io/ip or weft.io/ip-pool, not both. The address is reserved for the pod
// while it is deleted and recreated, and follows it to another node.
// A pinned pod without weft.io/mac gets a MAC derived from its address:
// 0a:58 and the four IPv4 octets (an IPv6-only pin: the address's low 32
// bits), so it keeps one MAC wherever it runs. weft.io/mac is refused beside
// weft.io/ip-pool: every pod of the StatefulSet would share it; the pool's
// pods get derived MACs, one per address.
// --- end ---
import { Cidr, IP, type Family } from '../core/cidr.js';

export const IP_ANNOTATION = 'weft.io/ip';
export const MAC_ANNOTATION = 'weft.io/mac';
export const IP_POOL_ANNOTATION = 'weft.io/ip-pool';
export const POD_INDEX_LABEL = 'apps.kubernetes.io/pod-index';

const MAX_VALUE = 256;
const MAX_POOL_VALUE = 16_384;
/** More addresses than any StatefulSet should have: a larger pool is a typo (a /8 for a /24). */
export const MAX_POOL_SIZE = 65_536;

/** A bad annotation: the message is one line naming it, its value and the fix. */
export class AnnotationError extends Error {
  constructor(readonly annotation: string, value: string, cause: string, fix: string) {
    super(`${annotation} ${shown(value)}: ${cause}; ${fix}`);
    this.name = 'AnnotationError';
  }
}

/** The value as a user can read it in one line: quoted, escaped, cut short. */
function shown(value: string): string {
  return value.length > 64 ? `${JSON.stringify(value.slice(0, 64)).slice(0, -1)}..." (${value.length} characters)` : JSON.stringify(value);
}

function parseAddress(annotation: string, value: string, text: string, fix: string): IP {
  try {
    return IP.parse(text.trim());
  } catch (err) {
    throw new AnnotationError(annotation, value, (err as Error).message, fix);
  }
}

/** Checks an address lies in the cluster Network of its family. */
function checkInNetwork(annotation: string, value: string, ip: IP, networks: Cidr[], fix: string): void {
  const own = networks.filter((n) => n.family === ip.family);
  if (own.length === 0) throw new AnnotationError(annotation, value, `${ip} is IPv${ip.family} but the cluster has no IPv${ip.family} network`, fix);
  if (!own.some((n) => n.contains(ip))) throw new AnnotationError(annotation, value, `${ip} is outside the cluster network ${own.join(', ')}`, fix);
}

const IP_FIX = 'give one address per family inside the cluster network, e.g. 10.244.3.17 or 10.244.3.17,2001:db8:3::17';

/** weft.io/ip: one address per family, each inside the cluster Network. */
export function parseIpAnnotation(value: string, networks: Cidr[]): IP[] {
  if (value.length > MAX_VALUE) throw new AnnotationError(IP_ANNOTATION, value, `longer than ${MAX_VALUE} characters`, IP_FIX);
  const parts = value.split(',');
  if (parts.length > 2) throw new AnnotationError(IP_ANNOTATION, value, `${parts.length} addresses`, IP_FIX);
  const out: IP[] = [];
  for (const part of parts) {
    const ip = parseAddress(IP_ANNOTATION, value, part, IP_FIX);
    if (out.some((o) => o.family === ip.family)) throw new AnnotationError(IP_ANNOTATION, value, `two IPv${ip.family} addresses`, IP_FIX);
    checkInNetwork(IP_ANNOTATION, value, ip, networks, IP_FIX);
    out.push(ip);
  }
  return out;
}

const MAC_FIX = 'give six colon-separated hex octets of a unicast MAC, e.g. 02:42:0a:f4:03:11 (02: locally administered)';

/** weft.io/mac: a unicast MAC, returned in lower case. */
export function parseMacAnnotation(value: string): string {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(value)) throw new AnnotationError(MAC_ANNOTATION, value, 'not a MAC address', MAC_FIX);
  const mac = value.toLowerCase();
  const first = parseInt(mac.slice(0, 2), 16);
  if (first & 1) throw new AnnotationError(MAC_ANNOTATION, value, 'a multicast MAC (the first octet is odd)', MAC_FIX);
  if (mac === '00:00:00:00:00:00') throw new AnnotationError(MAC_ANNOTATION, value, 'the all-zero MAC', MAC_FIX);
  return mac;
}

/** One run of a pool: `count` addresses from `first`. */
interface Segment {
  first: IP;
  count: bigint;
}

/** A StatefulSet's pool: per family, the addresses in order, kept as runs (a range is never expanded). */
export interface IpPool {
  families: Map<Family, Segment[]>;
}

const POOL_FIX = 'give addresses or first-last ranges inside the cluster network, comma-separated, e.g. 10.244.3.10-10.244.3.19';

/** weft.io/ip-pool: a list of addresses and ranges, in order, without duplicates. */
export function parseIpPool(value: string, networks: Cidr[]): IpPool {
  if (value.length > MAX_POOL_VALUE) throw new AnnotationError(IP_POOL_ANNOTATION, value, `longer than ${MAX_POOL_VALUE} characters`, POOL_FIX);
  if (value.trim() === '') throw new AnnotationError(IP_POOL_ANNOTATION, value, 'empty', POOL_FIX);
  const families = new Map<Family, Segment[]>();
  const sizes = new Map<Family, bigint>();
  for (const item of value.split(',')) {
    const dash = item.indexOf('-');
    const first = parseAddress(IP_POOL_ANNOTATION, value, dash < 0 ? item : item.slice(0, dash), POOL_FIX);
    const last = dash < 0 ? first : parseAddress(IP_POOL_ANNOTATION, value, item.slice(dash + 1), POOL_FIX);
    if (last.family !== first.family) throw new AnnotationError(IP_POOL_ANNOTATION, value, `range ${item.trim()} mixes IPv4 and IPv6`, POOL_FIX);
    if (last.value < first.value) throw new AnnotationError(IP_POOL_ANNOTATION, value, `range ${item.trim()} ends before it starts`, POOL_FIX);
    checkInNetwork(IP_POOL_ANNOTATION, value, first, networks, POOL_FIX);
    // A range is inside a network when both ends are and no network boundary lies between.
    if (!networks.some((n) => n.contains(first) && n.contains(last))) {
      throw new AnnotationError(IP_POOL_ANNOTATION, value, `range ${item.trim()} leaves the cluster network`, POOL_FIX);
    }
    const segs = families.get(first.family) ?? [];
    const count = last.value - first.value + 1n;
    const clash = segs.find((s) => first.value < s.first.value + s.count && s.first.value <= last.value);
    if (clash) throw new AnnotationError(IP_POOL_ANNOTATION, value, `${item.trim()} repeats addresses listed before`, 'list each address once');
    const size = (sizes.get(first.family) ?? 0n) + count;
    if (size > BigInt(MAX_POOL_SIZE)) {
      throw new AnnotationError(IP_POOL_ANNOTATION, value, `more than ${MAX_POOL_SIZE} IPv${first.family} addresses`, 'give the StatefulSet a pool the size of its replicas');
    }
    sizes.set(first.family, size);
    segs.push({ first, count });
    families.set(first.family, segs);
  }
  return { families };
}

/** The addresses (one per family of the pool) that ordinal `i` gets. */
export function poolAddresses(pool: IpPool, ordinal: number, value = ''): IP[] {
  const out: IP[] = [];
  for (const [family, segs] of pool.families) {
    let i = BigInt(ordinal);
    const seg = segs.find((s) => (i < s.count ? true : ((i -= s.count), false)));
    if (!seg) {
      const size = segs.reduce((n, s) => n + s.count, 0n);
      throw new AnnotationError(IP_POOL_ANNOTATION, value, `ordinal ${ordinal} is beyond its ${size} IPv${family} addresses`, 'add addresses to the pool or scale the StatefulSet down');
    }
    out.push(seg.first.add(i));
  }
  return out;
}

/** A StatefulSet pod's ordinal: the pod-index label, else the name's -N suffix; undefined for other pods. */
export function podOrdinal(name: string, labels: Record<string, string> = {}): number | undefined {
  const text = labels[POD_INDEX_LABEL] ?? /-(\d{1,9})$/.exec(name)?.[1];
  if (text === undefined || !/^\d{1,9}$/.test(text)) return undefined;
  return Number(text);
}

/**
 * The MAC of a pinned pod that names none: 0a:58 (locally administered,
 * unicast) and the IPv4 address's octets, or the low 32 bits of an IPv6 pin
 * when the pod pins no IPv4 address. The same address always gives the
 * same MAC, on every node; undefined when nothing is pinned.
 */
export function derivedMac(addresses: readonly IP[]): string | undefined {
  const ip = addresses.find((a) => a.family === 4) ?? addresses[0];
  if (!ip) return undefined;
  const low = ip.value & 0xffff_ffffn;
  const octets = [0x0a, 0x58, ...[24n, 16n, 8n, 0n].map((s) => Number((low >> s) & 0xffn))];
  return octets.map((o) => o.toString(16).padStart(2, '0')).join(':');
}

export interface PodPins {
  /** Requested addresses, at most one per family; empty when the pod pins none. */
  addresses: IP[];
  mac?: string;
}

/** What a pod's annotations pin, checked against the cluster Network(s); AnnotationError when one is bad. */
export function podPins(pod: { name: string; annotations?: Record<string, string>; labels?: Record<string, string> }, networks: Cidr[]): PodPins {
  const ann = pod.annotations ?? {};
  const ip = ann[IP_ANNOTATION];
  const pool = ann[IP_POOL_ANNOTATION];
  const out: PodPins = { addresses: [] };
  if (ip !== undefined && pool !== undefined) {
    throw new AnnotationError(IP_ANNOTATION, ip, `the pod also carries ${IP_POOL_ANNOTATION}`, 'keep one of the two');
  }
  if (ip !== undefined) out.addresses = parseIpAnnotation(ip, networks);
  if (pool !== undefined) {
    const ordinal = podOrdinal(pod.name, pod.labels);
    if (ordinal === undefined) {
      throw new AnnotationError(IP_POOL_ANNOTATION, pool, `pod ${pod.name.slice(0, 64)} has no StatefulSet ordinal`, `put ${IP_POOL_ANNOTATION} on a StatefulSet's pod template only`);
    }
    out.addresses = poolAddresses(parseIpPool(pool, networks), ordinal, pool);
  }
  const mac = ann[MAC_ANNOTATION];
  if (mac !== undefined && pool !== undefined) {
    throw new AnnotationError(MAC_ANNOTATION, mac, `the pod also carries ${IP_POOL_ANNOTATION}, so every pod of its StatefulSet would share one MAC`, `remove ${MAC_ANNOTATION}: each pool address gets its own MAC derived from it`);
  }
  if (mac !== undefined) out.mac = parseMacAnnotation(mac);
  return out;
}
