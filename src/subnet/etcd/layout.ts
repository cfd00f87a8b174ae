// Where things live in etcd (flannel's layout, so a flannel cluster reads unchanged).
// A lease key's name is "<ip>-<len>", or for flannel's dual-stack leases the
// IPv4 and the IPv6 subnet joined by "&": "10.244.1.0-24&fd00:10:244:1::-64".
import { Cidr } from '../../core/cidr.js';

/** Longer than any spelling of two subnets: refused before any parsing. */
const MAX_KEY_NAME = 128;

/** The subnet(s) a lease key names. */
export interface KeySubnets {
  subnet: Cidr;
  ipv6Subnet?: Cidr;
}

export function configKey(prefix: string): string {
  return `${prefix}/config`;
}

/** The directory of lease keys, with its trailing slash. */
export function subnetsDir(prefix: string): string {
  return `${prefix}/subnets/`;
}

/** A lease key's name under the subnets dir, as flannel writes it. */
export function leaseKeyName(subnet: Cidr, ipv6Subnet?: Cidr): string {
  if (!ipv6Subnet) return subnet.toKey();
  if (subnet.family !== 4 || ipv6Subnet.family !== 6) {
    throw new Error(`a dual-stack lease pairs an IPv4 and an IPv6 subnet, not ${subnet} and ${ipv6Subnet}`);
  }
  return `${subnet.toKey()}&${ipv6Subnet.toKey()}`;
}

export function subnetKey(prefix: string, subnet: Cidr, ipv6Subnet?: Cidr): string {
  return subnetsDir(prefix) + leaseKeyName(subnet, ipv6Subnet);
}

function cidrOfKey(part: string): Cidr | undefined {
  try {
    return Cidr.fromKey(part);
  } catch {
    return undefined;
  }
}

/**
 * The subnet(s) a key name spells, or why it spells none. Pure; never throws.
 * The spelling itself is not checked: compare with leaseKeyName for that.
 */
export function parseLeaseKeyName(name: string): KeySubnets | string {
  if (name.length > MAX_KEY_NAME) return `key is ${name.length} characters, longer than any subnet`;
  const amp = name.indexOf('&');
  const subnet = cidrOfKey(amp < 0 ? name : name.slice(0, amp));
  if (!subnet) return 'key is not a subnet (want <ip>-<len>)';
  if (amp < 0) return { subnet };
  if (subnet.family !== 4) return 'a dual-stack key starts with its IPv4 subnet (want <ipv4>-<len>&<ipv6>-<len>)';
  const ipv6Subnet = cidrOfKey(name.slice(amp + 1));
  if (!ipv6Subnet || ipv6Subnet.family !== 6) return 'the part of the key after "&" is not an IPv6 subnet (want <ipv4>-<len>&<ipv6>-<len>)';
  return { subnet, ipv6Subnet };
}

/**
 * Every subnet a key name occupies, leniently, for choosing a free subnet: each
 * "&"-separated part that names a subnet, even in a key parseLeaseKeyName
 * refuses (weft never hands out a subnet a key it cannot read may hold).
 */
export function subnetsOfKeyName(name: string): Cidr[] {
  return name.split('&').flatMap((part) => cidrOfKey(part) ?? []);
}

/** etcd's range_end for "every key starting with `prefix`". */
export function prefixRangeEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    const byte = end[i]!;
    if (byte < 0xff) {
      end[i] = byte + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // all 0xff: to the end of the keyspace
}
