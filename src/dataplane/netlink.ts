// Kernel change events from the native addon's netlink socket, typed: the
// replacement for sorting `ip monitor` text. The addon parses each message on
// its own thread and calls back with batches; this module names devices (the
// kernel reports routes, neighbours and FDB entries by ifindex) and decides
// which events may mean the kernel no longer matches weft's desired state.
import type { Logger } from 'pino';
import { loadNativeAddon } from '../core/native-addon.js';
import { oneLine } from '../errors.js';
import { normaliseDst } from './desired-check.js';
import { WEFT_ROUTE_PROTO } from './state.js';
import { Relauncher, type MonitorInterest } from './monitor.js';

export type EventOp = 'new' | 'del';

interface DeviceEvent {
  op: EventOp;
  ifindex: number;
  /** The device's name; on routes, neighbours and FDB entries filled in from link events (absent if unknown). */
  ifname?: string;
}

export interface LinkEvent extends DeviceEvent {
  kind: 'link';
  up: boolean;
  /** Set on bridge-port messages only. */
  family?: 'bridge';
}

export interface RouteEvent extends DeviceEvent {
  kind: 'route';
  family: 4 | 6;
  /** Network address ("10.5.2.0", "::" for a default route). */
  dst: string;
  prefixLen: number;
  table: number;
  protocol: number;
  /** RTN_* (1 unicast, 2 local, 3 broadcast, 6 blackhole, 7 unreachable...). */
  type: number;
  gateway?: string;
}

export interface NeighEvent extends DeviceEvent {
  kind: 'neigh';
  family: 4 | 6;
  dst: string;
  lladdr?: string;
  /** NUD_* flags. */
  state: number;
  flags: number;
}

export interface FdbEvent extends DeviceEvent {
  kind: 'fdb';
  family: 'bridge';
  lladdr?: string;
  /** The remote (vxlan) of the entry, if it has one. */
  dst?: string;
  state: number;
  flags: number;
}

export type KernelEvent = LinkEvent | RouteEvent | NeighEvent | FdbEvent;

export const NUD_PERMANENT = 0x80;
export const RT_TABLE_MAIN = 254;

/** The route's destination as "addr/len". */
export function routeDst(ev: RouteEvent): string {
  return `${ev.dst}/${ev.prefixLen}`;
}

/** True when an event may mean the kernel no longer matches weft's desired state. */
export function isRelevantKernelEvent(ev: KernelEvent, want: MonitorInterest): boolean {
  const weftDev = ev.ifname?.startsWith(want.linkPrefix) === true;
  switch (ev.kind) {
    case 'link':
      return weftDev || (ev.ifname !== undefined && want.devs.has(ev.ifname));
    case 'route':
      // A foreign route appearing or leaving at a desired destination matters too.
      return weftDev || ev.protocol === WEFT_ROUTE_PROTO || (want.dsts.size > 0 && want.dsts.has(normaliseDst(routeDst(ev)) ?? ''));
    case 'neigh':
    case 'fdb':
      // Neighbour churn matters only for the permanent entries weft writes on its devices.
      return weftDev && (ev.op === 'del' || (ev.state & NUD_PERMANENT) !== 0);
  }
}

export interface BatchInfo {
  /** The batch is the whole link table (at start, and after an overrun). */
  dump: boolean;
  /** The socket overran: events were dropped. */
  lost: boolean;
  /** Why the reader stopped, if it did. */
  error?: string;
}

export interface NetlinkAddon {
  NetlinkMonitor: new (
    opts: { netns?: string; rcvbuf?: number },
    onBatch: (events: KernelEvent[], info: BatchInfo) => void,
  ) => { stop(): void };
}

export function loadNetlinkAddon(): NetlinkAddon {
  return loadNativeAddon<NetlinkAddon>('the netlink event socket');
}

export interface NetlinkMonitorOptions {
  /** Network namespace to watch (default: the agent's own). */
  netns?: string;
  onEvents: (events: readonly KernelEvent[]) => void;
  /** Events may have been missed (overrun, or a restart): resync. */
  onLost: () => void;
  logger: Logger;
  /** Socket receive buffer in bytes (default 1 MiB); tests make it tiny to force an overrun. */
  rcvbuf?: number;
  addon?: NetlinkAddon;
}

/** Keeps one netlink event socket open, reopening it with backoff if it fails. */
export class NetlinkMonitor {
  private native?: { stop(): void };
  private readonly names = new Map<number, string>();
  private running = false;
  private generation = 0;
  private readonly relauncher: Relauncher;
  private readonly addon: NetlinkAddon;

  constructor(private readonly opts: NetlinkMonitorOptions) {
    this.addon = opts.addon ?? loadNetlinkAddon();
    this.relauncher = new Relauncher({
      logger: opts.logger,
      message: 'kernel event socket failed; reopening it',
      relaunch: () => {
        if (!this.running) return;
        this.open();
        this.opts.onLost();
      },
    });
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.open();
  }

  private open(): void {
    // Batches a stopped socket had queued still arrive: only the current one's count.
    const generation = ++this.generation;
    try {
      const opts = { ...(this.opts.netns !== undefined ? { netns: this.opts.netns } : {}), ...(this.opts.rcvbuf ? { rcvbuf: this.opts.rcvbuf } : {}) };
      this.native = new this.addon.NetlinkMonitor(opts, (events, info) => {
        if (generation === this.generation) this.batch(events, info);
      });
    } catch (err) {
      this.died(oneLine(err));
    }
  }

  private close(): void {
    this.generation++;
    this.native?.stop();
    this.native = undefined;
  }

  private batch(events: KernelEvent[], info: BatchInfo): void {
    if (!this.running) return;
    if (info.error) {
      this.close();
      this.died(info.error);
      return;
    }
    if (info.dump) {
      this.names.clear();
      for (const ev of events) this.names.set(ev.ifindex, ev.ifname ?? '');
      if (this.relauncher.healthy()) this.opts.logger.info('kernel events flow again');
      if (info.lost) this.opts.onLost();
      return;
    }
    for (const ev of events) {
      if (ev.kind === 'link') {
        if (ev.op === 'new') this.names.set(ev.ifindex, ev.ifname ?? '');
        else this.names.delete(ev.ifindex);
      } else {
        const name = this.names.get(ev.ifindex);
        if (name) ev.ifname = name;
      }
    }
    this.opts.onEvents(events);
  }

  private died(why: string): void {
    if (this.running) this.relauncher.failed(why);
  }

  stop(): void {
    this.running = false;
    this.relauncher.cancel();
    this.close();
  }
}
