// VTEP MAC addresses. A node's MAC is derived from its identity so it is the
// same after an agent restart or a reboot: peers' FDB and neighbour entries
// stay valid and traffic does not stop while the new lease propagates.
import { createHash } from 'node:crypto';

/** A locally administered unicast MAC derived from `identity` (e.g. node name and PublicIP). */
export function vtepMac(identity: string): string {
  const bytes = createHash('sha256').update(`weft vtep\0${identity}`).digest().subarray(0, 6);
  // Locally administered (bit 1 set), unicast (bit 0 clear): never a vendor's address, never multicast.
  bytes[0] = (bytes[0]! & 0xfc) | 0x02;
  return formatMac(bytes);
}

/** The MAC in canonical lowercase form if `value` is a unicast MAC, else undefined. Runs per peer on every lease event. */
export function parseUnicastMac(value: unknown): string | undefined {
  if (typeof value !== 'string' || !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(value)) return undefined;
  if ((parseInt(value.slice(0, 2), 16) & 0x01) !== 0) return undefined; // multicast or broadcast
  if (/^00(:00){5}$/.test(value)) return undefined;
  return value.toLowerCase();
}

function formatMac(bytes: ArrayLike<number>): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':');
}
