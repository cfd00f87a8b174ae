// host-gw has no options: the Backend section holds only its Type.
import { ConfigError } from '../../src/config/netconf.js';
import type { JsonObject } from '../../src/config/fields.js';

export type HostGwOptions = Record<string, never>;

/** `raw` is the Backend section without its Type key. */
export function parseHostGwOptions(raw: JsonObject): HostGwOptions {
  const [key] = Object.keys(raw);
  if (key !== undefined) {
    throw new ConfigError(`unknown key ${JSON.stringify(`Backend.${key}`.slice(0, 64))}: host-gw takes no options besides Type`);
  }
  return {};
}
