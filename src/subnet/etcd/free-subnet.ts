// Choosing the subnet a new lease asks for: the preferred one when it is free,
// else a random free one in [SubnetMin, SubnetMax]. Pure arithmetic over the
// names of the keys already under <prefix>/subnets/; no etcd access.
import { randomBytes, randomInt } from 'node:crypto';
import type { NetConf } from '../../config/netconf.js';
import type { Cidr } from '../../core/cidr.js';
import { WeftError } from '../../errors.js';
import { parseLeaseKeyName } from './layout.js';

/** Ranges up to this many subnets are enumerated; larger ones (IPv6) are probed at random. */
const ENUMERATE_LIMIT = 1n << 16n;

/**
 * `prefer` if free and leasable, else a random free subnet in [SubnetMin, SubnetMax].
 * `keyNames` are the existing keys' names relative to the subnets dir ("10.244.3.0-24",
 * or flannel's dual-stack "10.244.3.0-24&fd00:10:244:3::-64", which occupies its IPv4 subnet too).
 */
export function pickFreeSubnet(net: NetConf, keyNames: Iterable<string>, prefer?: Cidr): Cidr {
  const lo = net.network.indexOf(net.subnetMin);
  const hi = net.network.indexOf(net.subnetMax);
  const taken = new Set<bigint>();
  for (const name of keyNames) {
    // Any key occupies its subnet, valid value or not: we never overwrite what we cannot read.
    const index = leasableIndex(net, name, lo, hi);
    if (index !== undefined) taken.add(index);
  }
  if (prefer) {
    const index = leasableIndex(net, prefer.toKey(), lo, hi);
    if (index !== undefined && !taken.has(index)) return prefer;
  }
  const count = hi - lo + 1n;
  if (BigInt(taken.size) >= count) {
    throw new WeftError(
      `no free subnet: all ${count} /${net.subnetLen} subnets from ${net.subnetMin} to ${net.subnetMax} are leased or reserved`,
      'widen Network or SubnetMin/SubnetMax in net-conf, or delete stale leases',
    );
  }
  if (count <= ENUMERATE_LIMIT) {
    const free: bigint[] = [];
    for (let i = lo; i <= hi; i++) if (!taken.has(i)) free.push(i);
    return net.network.subnet(net.subnetLen, free[randomInt(free.length)]!);
  }
  // Huge (IPv6) ranges: the taken set is tiny next to the range, so a random probe almost always hits.
  for (;;) {
    const i = lo + randomBelow(count);
    if (!taken.has(i)) return net.network.subnet(net.subnetLen, i);
  }
}

/** Index of the subnet named `name` within Network if it may be leased (right length, in [min, max]). */
function leasableIndex(net: NetConf, name: string, lo: bigint, hi: bigint): bigint | undefined {
  const subnets = parseLeaseKeyName(name);
  if (typeof subnets === 'string') return undefined;
  const { subnet } = subnets;
  if (subnet.prefixLen !== net.subnetLen || !net.network.covers(subnet)) return undefined;
  const i = net.network.indexOf(subnet);
  return i >= lo && i <= hi ? i : undefined;
}

function randomBelow(n: bigint): bigint {
  const bytes = Math.ceil(n.toString(16).length / 2) + 8; // extra bytes make modulo bias negligible
  return BigInt(`0x${randomBytes(bytes).toString('hex')}`) % n;
}
