// The vxlan backend's keys of the Backend section (flannel's names).
import { ConfigError } from '../../src/config/netconf.js';
import { optionalBoolean, optionalInteger, rejectUnknownKeys, type JsonObject } from '../../src/config/fields.js';

export interface VxlanOptions {
  vni: number;
  /** UDP port of the tunnel (flannel and Linux-on-Kubernetes use 8472, not IANA's 4789). */
  port: number;
  /** Device MTU; unset means the underlay MTU minus the encapsulation overhead. */
  mtu?: number;
  /** Route on-link peers directly, like host-gw, and tunnel only to the others. */
  directRouting: boolean;
}

const KEYS = ['VNI', 'Port', 'MTU', 'DirectRouting', 'GBP', 'Learning'];
const WHERE = 'Backend.';

/** `raw` is the Backend section without its Type key. */
export function parseVxlanOptions(raw: JsonObject): VxlanOptions {
  rejectUnknownKeys(raw, KEYS, WHERE);
  // flannel's GBP and Learning are features weft does not have; false (their default) says nothing.
  for (const key of ['GBP', 'Learning']) {
    if (optionalBoolean(raw, key, WHERE)) {
      throw new ConfigError(`${WHERE}${key} is not supported by weft's vxlan backend; remove it`);
    }
  }
  const mtu = optionalInteger(raw, 'MTU', { min: 68, max: 65535 }, WHERE);
  return {
    vni: optionalInteger(raw, 'VNI', { min: 1, max: 0xffffff }, WHERE) ?? 1,
    port: optionalInteger(raw, 'Port', { min: 1, max: 65535 }, WHERE) ?? 8472,
    ...(mtu === undefined ? {} : { mtu }),
    directRouting: optionalBoolean(raw, 'DirectRouting', WHERE) ?? false,
  };
}
