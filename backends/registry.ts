// Backend type -> factory. Loaded lazily so a node only loads (and, for udp,
// only needs the native addon of) the backend it runs.
import type { BackendType } from '../src/config/netconf.js';
import type { BackendFactory } from './backend.js';

const FACTORIES: Partial<Record<BackendType, () => Promise<BackendFactory>>> = {
  'host-gw': async () => (await import('./hostgw/index.js')).createHostGwBackend,
  vxlan: async () => (await import('./vxlan/index.js')).createVxlanBackend,
  udp: async () => (await import('./udp/index.js')).createUdpBackend,
  bgp: async () => (await import('./bgp/index.js')).createBgpBackend,
};

/** The backend types this build can run. */
export const AVAILABLE_BACKENDS = Object.keys(FACTORIES) as BackendType[];

export async function backendFactory(type: BackendType): Promise<BackendFactory | undefined> {
  return FACTORIES[type]?.();
}
