// udp backend: flannel's wire format (the inner IP packet as the payload of a
// UDP datagram to port 8285), carried by the native loop in native/. The loop
// runs in a process of its own (loop-process.ts) that outlives the agent; the
// kernel side is one TUN device and one route; the peer table is pushed to
// the loop process after every reconcile.
import { availableParallelism } from 'node:os';
import type { Backend, BackendFactory } from '../backend.js';
import { PeerWarnings } from '../peer-warnings.js';
import { parseUdpOptions } from './options.js';
import { WeftError } from '../../src/errors.js';
import { UDP, UDP_DEVICE, udpDesired, udpMtu, udpOverhead, udpPeers } from './desired.js';
import type { LoopStatus } from './loop-client.js';
import { LoopSupervisor } from './loop-supervisor.js';
import { udpMetrics } from './metrics.js';
import type { DropReason, UdpCounters, UdpFeatures, UdpLoopOptions } from './native.js';

/** Smallest MTU the kernel allows on an IPv4 device. */
const MIN_MTU = 68;
/** How often drop counters are checked for the (rate-limited) warning. */
const DROP_REPORT_MS = 30_000;

/** The udp backend also answers for its loop's counters and probed features (as last polled, every second). */
export interface UdpBackend extends Backend {
  counters(): UdpCounters;
  features(): UdpFeatures;
  /** Why the loop process cannot carry traffic now (not running, not answering). */
  notReadyReason(): string | undefined;
  /** Polls the loop process now, for counters() and features() fresher than a second. */
  poll(): Promise<void>;
}

export const createUdpBackend: BackendFactory = async (ctx): Promise<UdpBackend> => {
  const options = parseUdpOptions(ctx.config.backend.raw);
  const { ext, logger } = ctx;
  const mtu = udpMtu(options, ext);
  if (mtu < MIN_MTU) {
    throw new WeftError(`${ext.name} has MTU ${ext.mtu}, too small for the udp backend (${udpOverhead(ext)} bytes of headers)`, `raise the MTU of ${ext.name}`);
  }
  if (mtu > ext.mtu - udpOverhead(ext)) {
    logger.warn(
      { mtu, underlayMtu: ext.mtu },
      `Backend.MTU ${mtu} plus ${udpOverhead(ext)} bytes of headers exceeds ${ext.name}'s MTU ${ext.mtu}; oversized packets will be refused with ICMP fragmentation-needed`,
    );
  }
  const address = ext.ip.toString();
  const loopOptions: UdpLoopOptions = {
    device: UDP_DEVICE,
    port: options.port,
    bindAddress: address,
    mode: options.mode,
    queues: options.mode === 'simple' ? 1 : options.queues ?? Math.min(availableParallelism(), 4),
  };
  const loop = await LoopSupervisor.open({ runDir: ctx.runDir, options: loopOptions, logger, explain: (err) => explainLoopError(err, options.port, address) });
  logger.info(
    { loopPid: loop.pid, features: loop.last.features },
    `udp backend: ${loop.adopted ? 'adopted the running loop process' : 'started the loop process'}; ${UDP_DEVICE} up, listening on ${address}:${options.port}`,
  );

  const warnings = new PeerWarnings(logger);
  const dropReport = reportDrops(() => loop.last, logger);
  return {
    type: UDP,
    mtu,
    backendData: null,
    desired: (own, peers) => udpDesired(own, ctx.config.network, mtu, { peers, ext, warnings }),
    sync: async (own, peers) => {
      const reopened = await loop.setPeers({ peers: udpPeers(own, peers, ext, warnings), ownSubnet: own.subnet.toString() });
      // The next reconcile gives the recreated device its address and route back.
      if (reopened) logger.warn(`${UDP_DEVICE} was deleted under the udp loop; the loop process recreated it`);
    },
    stop: async ({ teardown }) => {
      clearInterval(dropReport);
      await loop.stop({ teardown });
    },
    notReadyReason: () => loop.notReadyReason(),
    poll: () => loop.poll(),
    counters: () => loop.last.counters,
    metrics: () => udpMetrics(loop.last.counters),
    features: () => loop.last.features,
  };
};

/** The loop process's startup error (the addon's errno code and message) as a cause and a fix. */
function explainLoopError(err: unknown, port: number, address: string): unknown {
  const code = (err as { code?: string }).code;
  const msg = (err as Error).message;
  switch (code) {
    case 'EPERM':
    case 'EACCES':
      return new WeftError(`udp backend: ${msg}`, 'run weft as root or with CAP_NET_ADMIN');
    case 'ENOENT':
    case 'ENODEV':
      return new WeftError(`udp backend: ${msg}`, 'load the tun module (modprobe tun) or give the container /dev/net/tun');
    case 'EADDRINUSE':
      return new WeftError(`udp backend: ${msg}`, `stop the other process using UDP port ${port} (flanneld?) or set Backend.Port`);
    case 'EADDRNOTAVAIL':
      return new WeftError(`udp backend: ${msg}`, `${address} is not an address of this node; check --iface/--public-ip`);
    case 'EINVAL':
    case 'EBUSY':
      return new WeftError(`udp backend: ${msg}`, `delete it (ip link del ${UDP_DEVICE}) and start weft again`);
    default:
      return err;
  }
}

/** Logs inbound/outbound drops at most once per interval, as deltas by reason. */
function reportDrops(current: () => LoopStatus, logger: { warn(obj: object, msg: string): void }): NodeJS.Timeout {
  let last: UdpCounters | undefined;
  let lastPid: number | undefined;
  const timer = setInterval(() => {
    const { pid, counters: now } = current();
    // A restarted loop process starts its counters from zero.
    if (pid !== lastPid) last = undefined;
    lastPid = pid;
    if (last) {
      const delta = (a: Record<DropReason, number>, b: Record<DropReason, number>) =>
        Object.fromEntries(Object.entries(a).filter(([k, v]) => v > b[k as DropReason]).map(([k, v]) => [k, v - b[k as DropReason]]));
      const inbound = delta(now.dropsInbound, last.dropsInbound);
      const outbound = delta(now.dropsOutbound, last.dropsOutbound);
      if (Object.keys(inbound).length || Object.keys(outbound).length) {
        logger.warn({ inbound, outbound }, `udp backend dropped packets in the last ${DROP_REPORT_MS / 1000}s`);
      }
    }
    last = now;
  }, DROP_REPORT_MS);
  timer.unref();
  return timer;
}
