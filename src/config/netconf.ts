// The parsed, validated net-conf.json. Field names on the wire are flannel's.
import type { Cidr } from '../core/cidr.js';

export const BACKEND_TYPES = ['host-gw', 'vxlan', 'udp', 'bgp'] as const;
export type BackendType = (typeof BACKEND_TYPES)[number];

export interface NetConf {
  network: Cidr;
  subnetLen: number;
  /** First and last subnet that may be leased (inclusive). */
  subnetMin: Cidr;
  subnetMax: Cidr;
  backend: BackendConf;
}

/**
 * `Backend` section: the type plus the backend's own keys exactly as the
 * operator wrote them (e.g. VNI, Port, DirectRouting, MTU). Each backend
 * validates its own keys in backends/<name>/options.ts.
 */
export interface BackendConf {
  type: BackendType;
  raw: Record<string, unknown>;
}

/** A user-caused configuration error: one line naming the field and the reason. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(`net-conf: ${message}`);
    this.name = 'ConfigError';
  }
}
