// The udp backend's keys of the Backend section (flannel's Port, plus weft's
// MTU, Mode and Queues).
import { ConfigError } from '../../src/config/netconf.js';
import { optionalInteger, optionalString, rejectUnknownKeys, type JsonObject } from '../../src/config/fields.js';

export const UDP_MODES = ['fast', 'simple'] as const;
export type UdpMode = (typeof UDP_MODES)[number];

export interface UdpOptions {
  /** UDP port peers listen on (flannel's udp backend uses 8285). */
  port: number;
  /** TUN device MTU; unset means the underlay MTU minus the IP and UDP headers. */
  mtu?: number;
  /** "fast": offloads, batching and one worker per queue; "simple": one packet per system call. */
  mode: UdpMode;
  /** Worker threads (TUN queues) in fast mode; unset means one per CPU, at most 4. */
  queues?: number;
}

const KEYS = ['Port', 'MTU', 'Mode', 'Queues'];
const WHERE = 'Backend.';

/** `raw` is the Backend section without its Type key. */
export function parseUdpOptions(raw: JsonObject): UdpOptions {
  rejectUnknownKeys(raw, KEYS, WHERE);
  const mode = optionalString(raw, 'Mode', WHERE) ?? 'fast';
  if (!(UDP_MODES as readonly string[]).includes(mode)) {
    throw new ConfigError(`${WHERE}Mode ${JSON.stringify(mode.slice(0, 32))} is not one of ${UDP_MODES.map((m) => `"${m}"`).join(', ')}`);
  }
  const mtu = optionalInteger(raw, 'MTU', { min: 68, max: 65535 }, WHERE);
  const queues = optionalInteger(raw, 'Queues', { min: 1, max: 64 }, WHERE);
  if (queues !== undefined && queues > 1 && mode === 'simple') {
    throw new ConfigError(`${WHERE}Queues ${queues} needs Mode "fast"; simple mode runs one queue`);
  }
  return {
    port: optionalInteger(raw, 'Port', { min: 1, max: 65535 }, WHERE) ?? 8285,
    ...(mtu === undefined ? {} : { mtu }),
    mode: mode as UdpMode,
    ...(queues === undefined ? {} : { queues }),
  };
}
