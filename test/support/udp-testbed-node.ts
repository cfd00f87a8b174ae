// The child process of one udp testbed node (see udp-testbed.ts): runs the
// udp backend (kind "backend") or the bare native loop (kind "loop") inside
// the node's namespace, stands in for the reconciler with ip(8), and answers
// JSON lines on stdin: sync, counters, features, stop.
import { execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { createUdpBackend, type UdpBackend } from '../../backends/udp/index.js';
import { loadUdpAddon } from '../../backends/udp/native.js';
import type { NetConf } from '../../src/config/netconf.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';
import type { NodeConfig, PeerSpec, TestbedNode } from './udp-testbed.js';

interface ChildConfig extends NodeConfig {
  node: TestbedNode;
  network: string;
  underlayMtu: number;
}

interface NodeApi {
  sync(peers: PeerSpec[]): Promise<unknown>;
  counters(): Promise<unknown> | unknown;
  features(): Promise<unknown> | unknown;
  stop(teardown: boolean): Promise<void>;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as ChildConfig;
const out = (o: unknown): void => void process.stdout.write(JSON.stringify(o) + '\n');
const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const network = Cidr.parse(cfg.network);
const own: Lease = { subnet: Cidr.parse(cfg.node.subnet), attrs: { publicIP: IP.parse(cfg.node.underlay), backendType: 'udp', backendData: null } };
const lease = (p: PeerSpec): Lease => ({ subnet: Cidr.parse(p.subnet), attrs: { publicIP: IP.parse(p.publicIP), backendType: p.backendType ?? 'udp', backendData: null } });

async function backendApi(): Promise<NodeApi> {
  const logger = pino({ level: 'warn' }, process.stderr);
  const config: NetConf = { network, subnetLen: own.subnet.prefixLen, subnetMin: own.subnet, subnetMax: own.subnet, backend: { type: 'udp', raw: cfg.backend ?? {} } };
  const ext = { name: cfg.node.dev, ip: IP.parse(cfg.node.underlay), publicIP: IP.parse(cfg.node.underlay), mtu: cfg.underlayMtu, connected: [] };
  const backend = (await createUdpBackend({ config, ext, logger, nodeName: cfg.node.ns, runDir: cfg.node.runDir })) as UdpBackend;
  // Stands in for the reconciler: applies the desired state with ip(8).
  const reconcile = (): void => {
    const state = backend.desired(own, []);
    for (const l of state.links) ip('link', 'set', l.name, 'mtu', String(l.mtu), 'up');
    for (const a of state.addrs) ip('addr', 'replace', a.cidr, 'dev', a.dev);
    for (const r of state.routes) ip('route', 'replace', r.dst, 'dev', r.dev!, 'proto', '147');
  };
  reconcile();
  return {
    sync: async (peers) => {
      await backend.sync!(own, peers.map(lease));
      reconcile();
      return { ok: true };
    },
    counters: async () => (await backend.poll(), backend.counters()),
    features: async () => (await backend.poll(), backend.features()),
    stop: (teardown) => backend.stop({ teardown }),
  };
}

function loopApi(): NodeApi {
  const addon = loadUdpAddon();
  const opts = cfg.loop ?? {};
  const loop = new addon.UdpLoop({ device: 'weft0', port: 8285, bindAddress: cfg.node.underlay, ...opts });
  loop.start();
  ip('link', 'set', 'weft0', 'mtu', String(opts.mtu ?? cfg.underlayMtu - 28), 'up');
  ip('addr', 'replace', `${own.subnet.ip}/32`, 'dev', 'weft0');
  ip('route', 'replace', network.toString(), 'dev', 'weft0', 'proto', '147');
  return {
    sync: async (peers) => ({
      entries: loop.setPeers(peers.filter((p) => (p.backendType ?? 'udp') === 'udp').map(({ subnet, publicIP }) => ({ subnet, publicIP })), cfg.node.subnet),
    }),
    counters: () => loop.counters(),
    features: () => loop.features(),
    stop: async (teardown) => loop.stop(teardown),
  };
}

const api = cfg.kind === 'backend' ? await backendApi() : loopApi();
let stopping = false;
const stop = async (teardown: boolean): Promise<void> => {
  if (stopping) return;
  stopping = true;
  await api.stop(teardown);
};
process.on('SIGTERM', () => void stop(false).then(() => process.exit(0)));
const rl = createInterface({ input: process.stdin });
rl.on('close', () => void stop(false).then(() => process.exit(0)));
rl.on('line', async (line) => {
  const cmd = JSON.parse(line) as { op: string; peers?: PeerSpec[]; teardown?: boolean };
  try {
    if (cmd.op === 'sync') out(await api.sync(cmd.peers ?? []));
    else if (cmd.op === 'counters') out(await api.counters());
    else if (cmd.op === 'features') out(await api.features());
    else if (cmd.op === 'stop') {
      await stop(!!cmd.teardown);
      out({ stopped: true });
      process.exit(0);
    } else out({ error: `unknown op ${cmd.op}` });
  } catch (e) {
    out({ error: String((e as Error)?.message ?? e) });
  }
});
out({ ready: true, pid: process.pid });
