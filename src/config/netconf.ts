// The parsed, validated net-conf.json. Field names on the wire are flannel's.
import type { Cidr } from '../core/cidr.js';

export const BACKEND_TYPES = ['host-gw', 'vxlan', 'udp', 'bgp'] as const;
export type BackendType = (typeof BACKEND_TYPES)[number];

/** One address family's pod addressing: the cluster network and the part of it nodes lease from. */
export interface SubnetRange {
  network: Cidr;
  subnetLen: number;
  /** First and last subnet that may be leased (inclusive). */
  subnetMin: Cidr;
  subnetMax: Cidr;
}

/**
 * The primary family's range at the top level: IPv4's, or IPv6's in an
 * IPv6-only cluster (EnableIPv4 false). `ipv6` is the second range of a
 * dual-stack cluster (EnableIPv4 and EnableIPv6 true).
 */
export interface NetConf extends SubnetRange {
  ipv6?: SubnetRange;
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

/** The cluster Network of each family the net-conf enables, the primary (IPv4's unless IPv6-only) first. */
export function confNetworks(conf: NetConf): Cidr[] {
  return conf.ipv6 ? [conf.network, conf.ipv6.network] : [conf.network];
}
