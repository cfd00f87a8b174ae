// Choosing the subnets a lease asks for: the preferred one when it is free,
// else a random free one in [SubnetMin, SubnetMax]; and which subnets this
// node's own key names when it has one. Pure arithmetic over the names of the
// keys already under <prefix>/subnets/; no etcd access. One code path for
// both families: the range says which.
import { randomBytes, randomInt } from 'node:crypto';
import type { SubnetRange } from '../../config/netconf.js';
import type { Cidr } from '../../core/cidr.js';
import { NoFreeSubnetError } from '../manager.js';
import { subnetsOfKeyName, type KeySubnets } from './layout.js';

/** Ranges up to this many subnets are enumerated; larger ones (IPv6) are probed at random. */
const ENUMERATE_LIMIT = 1n << 16n;

/**
 * `prefer` if free and leasable, else a random free subnet in [subnetMin, subnetMax]
 * of `range` (net-conf's IPv4 range, or its IPv6 one). `keyNames` are the existing
 * keys' names relative to the subnets dir ("10.244.3.0-24", or flannel's dual-stack
 * "10.244.3.0-24&fd00:10:0:3::-64"); each occupies its subnet of the range's family.
 */
export function pickFreeSubnet(range: SubnetRange, keyNames: Iterable<string>, prefer?: Cidr): Cidr {
  const lo = range.network.indexOf(range.subnetMin);
  const hi = range.network.indexOf(range.subnetMax);
  const taken = new Set<bigint>();
  for (const name of keyNames) {
    // Any key occupies its subnet, valid value or not: we never overwrite what we cannot read.
    for (const subnet of subnetsOfKeyName(name)) {
      const index = leasableIndex(range, subnet, lo, hi);
      if (index !== undefined) taken.add(index);
    }
  }
  if (prefer) {
    const index = leasableIndex(range, prefer, lo, hi);
    if (index !== undefined && !taken.has(index)) return prefer;
  }
  const count = hi - lo + 1n;
  if (BigInt(taken.size) >= count) {
    const keys = range.network.family === 6 ? 'IPv6' : ''; // flannel's IPv6 keys are the IPv4 ones prefixed
    throw new NoFreeSubnetError(
      `no free subnet for this node: ${keys}SubnetMin ${range.subnetMin.ip} and ${keys}SubnetMax ${range.subnetMax.ip} allow ${count} /${range.subnetLen} subnets and all are leased or reserved; ` +
        `widen ${keys}SubnetMin/${keys}SubnetMax (or ${keys}Network) in net-conf, or delete stale leases`,
    );
  }
  if (count <= ENUMERATE_LIMIT) {
    const free: bigint[] = [];
    for (let i = lo; i <= hi; i++) if (!taken.has(i)) free.push(i);
    return range.network.subnet(range.subnetLen, free[randomInt(free.length)]!);
  }
  // Huge (IPv6) ranges: the taken set is tiny next to the range, so a random probe almost always hits.
  for (;;) {
    const i = lo + randomBelow(count);
    if (!taken.has(i)) return range.network.subnet(range.subnetLen, i);
  }
}

/**
 * The subnets this node's lease key is to name. The IPv4 subnet is the
 * existing key's (never moved), else `prefer.subnet` if free, else a random
 * free one. With `ipv6` (IPv6 enabled and the node has an IPv6 address) an
 * IPv6 subnet joins it: the existing key's (or, for a key without one,
 * `prefer.ipv6Subnet`) while leasable and free, else a random free one. Without `ipv6` an
 * existing key's IPv6 subnet is dropped. So a single-family key is upgraded
 * to a dual-stack one and back keeping its IPv4 subnet. `others` are the
 * other keys' names (the node's own key does not occupy its own subnets).
 */
export function ownKeySubnets(
  net: SubnetRange,
  ipv6: SubnetRange | undefined,
  others: readonly string[],
  existing?: KeySubnets,
  prefer: { subnet?: Cidr; ipv6Subnet?: Cidr } = {},
): KeySubnets {
  const subnet = existing?.subnet ?? pickFreeSubnet(net, others, prefer.subnet);
  if (!ipv6) return { subnet };
  return { subnet, ipv6Subnet: pickFreeSubnet(ipv6, others, existing?.ipv6Subnet ?? prefer.ipv6Subnet) };
}

/** Index of `subnet` within the range's network if it may be leased (same family and length, in [min, max]). */
function leasableIndex(range: SubnetRange, subnet: Cidr, lo: bigint, hi: bigint): bigint | undefined {
  if (subnet.prefixLen !== range.subnetLen || !range.network.covers(subnet)) return undefined;
  const i = range.network.indexOf(subnet);
  return i >= lo && i <= hi ? i : undefined;
}

function randomBelow(n: bigint): bigint {
  const bytes = Math.ceil(n.toString(16).length / 2) + 8; // extra bytes make modulo bias negligible
  return BigInt(`0x${randomBytes(bytes).toString('hex')}`) % n;
}
