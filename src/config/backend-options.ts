// Each backend validates its own keys of the Backend section. parseNetConf
// runs the parser of the configured type so a bad key fails at config time;
// backends read their typed options back with backendOptions().
import { parseHostGwOptions } from '../../backends/hostgw/options.js';
import { parseVxlanOptions } from '../../backends/vxlan/options.js';
import { parseUdpOptions } from '../../backends/udp/options.js';
import { parseBgpOptions } from '../../backends/bgp/options.js';
import type { JsonObject } from './fields.js';
import type { BackendType, NetConf } from './netconf.js';

/** Parses a backend's keys (the Backend section without Type); throws ConfigError. */
export type BackendOptionsParser = (raw: JsonObject) => unknown;

const OPTION_PARSERS = {
  'host-gw': parseHostGwOptions,
  vxlan: parseVxlanOptions,
  udp: parseUdpOptions,
  bgp: parseBgpOptions,
} satisfies Record<BackendType, BackendOptionsParser>;

export type BackendOptions<K extends BackendType> = ReturnType<(typeof OPTION_PARSERS)[K]>;

export function parseBackendOptions(type: BackendType, raw: JsonObject): unknown {
  return OPTION_PARSERS[type](raw);
}

/** The typed options of the configured backend, which must be `type`. */
export function backendOptions<K extends BackendType>(conf: NetConf, type: K): BackendOptions<K> {
  if (conf.backend.type !== type) {
    throw new Error(`backend options for ${type} asked of a ${conf.backend.type} configuration`);
  }
  return OPTION_PARSERS[type](conf.backend.raw) as BackendOptions<K>;
}
