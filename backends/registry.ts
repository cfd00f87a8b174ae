// The one place that knows every backend. Each registers its type, its
// option parser (run when net-conf is validated, so a bad key fails at config
// time), its factory (loaded lazily, so a node only loads, and for udp only
// needs the native addon of, the backend it runs), and optional hooks for
// `weft agent --teardown` and `weft status`. Config, the agent and the CLI
// reach backends only through here.
import type { JsonObject } from '../src/config/fields.js';
import type { BackendType, NetConf } from '../src/config/netconf.js';
import type { BackendFactory } from './backend.js';
import { parseBgpOptions } from './bgp/options.js';
import { parseHostGwOptions } from './hostgw/options.js';
import { parseUdpOptions } from './udp/options.js';
import { parseVxlanOptions } from './vxlan/options.js';

export interface NodeContext {
  /** The agent's --run-dir. */
  runDir: string;
  /** The cluster Network, when still known (from subnet.env). */
  network?: string;
  /** --bird-socket, for `weft status`. */
  birdSocket?: string;
}

export interface BackendRegistration {
  type: BackendType;
  /** Validates the Backend section's keys (without Type), against the rest of the net-conf when given; throws ConfigError naming the key. */
  parseOptions(raw: JsonObject, conf?: NetConf): unknown;
  create(): Promise<BackendFactory>;
  /** Removes what the backend keeps outside the kernel state the reconciler owns (its processes). */
  teardown?(node: NodeContext): Promise<unknown>;
  /** Extra status for `weft status`: JSON, and lines for a terminal. */
  status?(node: NodeContext): Promise<{ json: unknown; lines: string[] }>;
}

const REGISTRY: Record<BackendType, BackendRegistration> = {
  'host-gw': {
    type: 'host-gw',
    parseOptions: parseHostGwOptions,
    create: async () => (await import('./hostgw/index.js')).createHostGwBackend,
  },
  vxlan: {
    type: 'vxlan',
    parseOptions: parseVxlanOptions,
    create: async () => (await import('./vxlan/index.js')).createVxlanBackend,
  },
  udp: {
    type: 'udp',
    parseOptions: parseUdpOptions,
    create: async () => (await import('./udp/index.js')).createUdpBackend,
    teardown: async (node) => (await import('./udp/loop-client.js')).stopUdpLoop(node.runDir, { teardown: true }),
  },
  bgp: {
    type: 'bgp',
    parseOptions: parseBgpOptions,
    create: async () => (await import('./bgp/index.js')).createBgpBackend,
    teardown: async (node) => (await import('./bgp/node.js')).removeNodeBird(node),
    status: async (node) => (await import('./bgp/node.js')).bgpNodeStatus(node),
  },
};

/** The backend types this build can run. */
export const AVAILABLE_BACKENDS = Object.keys(REGISTRY) as BackendType[];

export function registeredBackends(): BackendRegistration[] {
  return Object.values(REGISTRY);
}

export function backendRegistration(type: string): BackendRegistration | undefined {
  return (REGISTRY as Record<string, BackendRegistration>)[type];
}

export async function backendFactory(type: BackendType): Promise<BackendFactory | undefined> {
  return backendRegistration(type)?.create();
}

/**
 * Whether this build can run a parsed net-conf: its backend's keys, checked
 * by the backend's own parser against the families the net-conf runs. Throws ConfigError.
 */
export function checkBackendOptions(conf: NetConf): NetConf {
  backendRegistration(conf.backend.type)?.parseOptions(conf.backend.raw, conf);
  return conf;
}
