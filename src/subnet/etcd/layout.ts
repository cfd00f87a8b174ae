// Where things live in etcd (flannel's layout, so a flannel cluster reads unchanged).
import { Cidr } from '../../core/cidr.js';

export function configKey(prefix: string): string {
  return `${prefix}/config`;
}

/** The directory of lease keys, with its trailing slash. */
export function subnetsDir(prefix: string): string {
  return `${prefix}/subnets/`;
}

export function subnetKey(prefix: string, subnet: Cidr): string {
  return subnetsDir(prefix) + subnet.toKey();
}

/**
 * The subnets a key name under subnetsDir names: one ("10.5.1.0-24"), or the
 * two of a flannel dual-stack lease joined by "&" ("10.5.1.0-24&fd00:10:0:1::-64").
 * A part that names no subnet is left out.
 */
export function subnetsOfKeyName(name: string): Cidr[] {
  const subnets: Cidr[] = [];
  for (const part of name.split('&')) {
    try {
      subnets.push(Cidr.fromKey(part));
    } catch {
      // not a subnet: the caller decides what such a key means
    }
  }
  return subnets;
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
