// Test leases and interfaces with an IPv6 half, for every backend's dual-stack tests.
import type { ExternalInterface } from '../../backends/backend.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';

/** `lease` with a flannel dual-stack lease's IPv6 half: subnet, PublicIPv6 and BackendV6Data. */
export function withIPv6(lease: Lease, subnet6: string, publicIPv6: string, backendV6Data: unknown = null): Lease {
  return { ...lease, ipv6Subnet: Cidr.parse(subnet6), attrs: { ...lease.attrs, publicIPv6: IP.parse(publicIPv6), backendV6Data } };
}

/** `ext` with an IPv6 side: its address (also the published one) and connected prefix. */
export function extWithIPv6(ext: ExternalInterface, address6: string, connected6: string[]): ExternalInterface {
  const ip = IP.parse(address6);
  return { ...ext, ipv6: { ip, publicIP: ip, connected: connected6.map((c) => Cidr.parse(c)) } };
}
