// udp backend: flannel's wire format (the inner IP packet as the payload of a
// UDP datagram to port 8285), carried by the native loop in native/. The
// kernel side is one TUN device and one route; the peer table is pushed to
// the loop after every reconcile.
import { availableParallelism } from 'node:os';
import type { Backend, BackendFactory } from '../backend.js';
import { PeerWarnings } from '../peer-warnings.js';
import { backendOptions } from '../../src/config/backend-options.js';
import { WeftError } from '../../src/errors.js';
import { UDP, UDP_DEVICE, udpDesired, udpMtu, udpOverhead, udpPeers } from './desired.js';
import { loadUdpAddon, type DropReason, type UdpCounters, type UdpFeatures, type UdpLoop } from './native.js';

/** Smallest MTU the kernel allows on an IPv4 device. */
const MIN_MTU = 68;
/** How often drop counters are checked for the (rate-limited) warning. */
const DROP_REPORT_MS = 30_000;

/** The udp backend also answers for its loop's counters and probed features. */
export interface UdpBackend extends Backend {
  counters(): UdpCounters;
  features(): UdpFeatures;
}

export const createUdpBackend: BackendFactory = async (ctx): Promise<UdpBackend> => {
  const options = backendOptions(ctx.config, UDP);
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
  const addon = loadUdpAddon();
  const open = (): UdpLoop => {
    const loop = openLoop(() =>
      new addon.UdpLoop({
        device: UDP_DEVICE,
        port: options.port,
        bindAddress: ext.ip.toString(),
        mode: options.mode,
        queues: options.mode === 'simple' ? 1 : options.queues ?? Math.min(availableParallelism(), 4),
      }), options.port, ext.ip.toString());
    loop.start();
    return loop;
  };
  let loop = open();
  logger.info({ features: loop.features() }, `udp backend: ${UDP_DEVICE} up, listening on ${ext.ip}:${options.port}`);

  const warnings = new PeerWarnings(logger);
  const dropReport = reportDrops(() => loop, logger);
  let stopped = false;
  return {
    type: UDP,
    mtu,
    backendData: null,
    desired: (own) => udpDesired(own, ctx.config.network, mtu),
    sync: async (own, peers) => {
      if (stopped) return;
      if (loop.deviceLost()) {
        // Someone deleted weft0: only the loop can create a TUN device, so
        // reopen it; the next reconcile gives it its address and route back.
        logger.warn(`${UDP_DEVICE} was deleted under the udp loop; recreating it`);
        loop.stop(false);
        loop = open();
      }
      loop.setPeers(udpPeers(own, peers, ext, warnings), own.subnet.toString());
    },
    stop: async ({ teardown }) => {
      clearInterval(dropReport);
      stopped = true;
      loop.stop(teardown);
    },
    counters: () => loop.counters(),
    features: () => loop.features(),
  };
};

/** Opens the loop, turning the addon's errno codes into a cause and a fix. */
function openLoop(open: () => UdpLoop, port: number, address: string): UdpLoop {
  try {
    return open();
  } catch (err) {
    const code = (err as { code?: string }).code;
    const msg = (err as Error).message;
    switch (code) {
      case 'EPERM':
      case 'EACCES':
        throw new WeftError(`udp backend: ${msg}`, 'run weft as root or with CAP_NET_ADMIN');
      case 'ENOENT':
      case 'ENODEV':
        throw new WeftError(`udp backend: ${msg}`, 'load the tun module (modprobe tun) or give the container /dev/net/tun');
      case 'EADDRINUSE':
        throw new WeftError(`udp backend: ${msg}`, `stop the other process using UDP port ${port} (flanneld?) or set Backend.Port`);
      case 'EADDRNOTAVAIL':
        throw new WeftError(`udp backend: ${msg}`, `${address} is not an address of this node; check --iface/--public-ip`);
      case 'EINVAL':
      case 'EBUSY':
        throw new WeftError(`udp backend: ${msg}`, `delete it (ip link del ${UDP_DEVICE}) and start weft again`);
      default:
        throw err;
    }
  }
}

/** Logs inbound/outbound drops at most once per interval, as deltas by reason. */
function reportDrops(current: () => UdpLoop, logger: { warn(obj: object, msg: string): void }): NodeJS.Timeout {
  let last: UdpCounters | undefined;
  let lastLoop: UdpLoop | undefined;
  const timer = setInterval(() => {
    const loop = current();
    // A reopened loop starts its counters from zero.
    if (loop !== lastLoop) last = undefined;
    lastLoop = loop;
    const now = loop.counters();
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
