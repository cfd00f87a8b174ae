// A route BIRD put into the kernel and someone deleted comes back at once,
// as on the other backends: a kernel event (netlink) of a deleted route
// inside the prefixes BIRD owns makes BIRD scan the kernel now rather than at
// its next periodic scan. The scan only adds what is missing, so a route an
// operator replaced with a foreign one stays (and BIRD's returns as soon as
// the foreign one goes); an add is no deletion, so nothing here feeds itself
// in a loop.
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import { normaliseDst } from '../../src/dataplane/desired-check.js';
import { KernelMonitor } from '../../src/dataplane/monitor.js';
import { NetlinkMonitor, RT_TABLE_MAIN, routeDst, type KernelEvent } from '../../src/dataplane/netlink.js';
import { oneLine } from '../../src/errors.js';
import { Cidr } from '../../src/core/cidr.js';

export interface DeletedRouteWatchOptions {
  /** The prefixes whose BIRD routes are restored (the Network, AllowedPrefixes). */
  prefixes: readonly Cidr[];
  /**
   * Prefix for commands that must run in the node's network namespace
   * (tests); when set, events come from `ip monitor` run through it. Empty:
   * the netlink socket of the agent's own namespace.
   */
  execPrefix: readonly string[];
  /** Makes BIRD scan the kernel (and so re-install what is missing). */
  rescan: () => Promise<void>;
  logger: Logger;
  /**
   * Wait after a deletion before the scan (default 50 ms), so that an
   * operator's `ip route del` + `ip route add` of a foreign route completes
   * first and the scan finds the foreign route in place.
   */
  settleMs?: number;
}

/**
 * True for `ip monitor route`'s line of a main-table route deleted inside
 * `prefixes`: BIRD's own, or a foreign one that may have stood in for BIRD's.
 */
export function isDeletedRouteInside(line: string, prefixes: readonly Cidr[]): boolean {
  const tokens = line.trim().split(/\s+/);
  if (tokens[0] !== 'Deleted') return false;
  const at = (word: string): string | undefined => {
    const i = tokens.indexOf(word);
    return i >= 0 ? tokens[i + 1] : undefined;
  };
  const table = at('table');
  if (table !== undefined && table !== 'main' && table !== '254') return false;
  // "Deleted 10.1.2.0/24 via ..." or "Deleted unreachable 10.1.2.0/24 ...".
  const dst = normaliseDst(/^[a-z]+$/.test(tokens[1] ?? '') ? tokens[2] : tokens[1]);
  if (dst === undefined) return false;
  const cidr = Cidr.parse(dst);
  return prefixes.some((p) => p.covers(cidr));
}

/** True for a main-table route deleted inside `prefixes`: BIRD's own, or a foreign one that may have stood in for BIRD's. */
export function isDeletedRouteEventInside(ev: KernelEvent, prefixes: readonly Cidr[]): boolean {
  if (ev.kind !== 'route' || ev.op !== 'del' || ev.table !== RT_TABLE_MAIN) return false;
  const dst = normaliseDst(routeDst(ev));
  if (dst === undefined) return false;
  const cidr = Cidr.parse(dst);
  return prefixes.some((p) => p.covers(cidr));
}

export class DeletedRouteWatch {
  private readonly monitor: KernelMonitor | NetlinkMonitor;
  private timer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private lastError: string | undefined;

  constructor(private readonly opts: DeletedRouteWatchOptions) {
    // Deletions may have been missed while events were lost.
    const onLost = (): void => this.schedule();
    if (opts.execPrefix.length === 0) {
      try {
        this.monitor = new NetlinkMonitor({
          onEvents: (events) => {
            if (events.some((ev) => isDeletedRouteEventInside(ev, opts.prefixes))) this.schedule();
          },
          onLost,
          logger: opts.logger,
        });
        return;
      } catch (err) {
        opts.logger.warn(`deleted BIRD routes are watched with \`ip monitor\` instead of the netlink socket: ${oneLine(err)}`);
      }
    }
    const [cmd, ...args] = [...opts.execPrefix, 'ip', 'monitor', 'route'];
    this.monitor = new KernelMonitor({
      spawn: () => spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'] }),
      onLine: (line) => {
        if (isDeletedRouteInside(line, opts.prefixes)) this.schedule();
      },
      onRestart: onLost,
      logger: opts.logger,
    });
  }

  start(): void {
    this.monitor.start();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.monitor.stop();
  }

  /** Bursts of deletions coalesce into one scan, and into one more if they go on during it. */
  private schedule(): void {
    if (this.stopped || this.timer) return;
    if (this.scanning) {
      this.again = true;
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.scanning = this.scan().finally(() => {
        this.scanning = undefined;
        if (this.again) {
          this.again = false;
          this.schedule();
        }
      });
    }, this.opts.settleMs ?? 50);
  }

  private async scan(): Promise<void> {
    try {
      await this.opts.rescan();
      if (this.lastError) this.opts.logger.info('BIRD rescans the kernel again after a deleted route');
      this.lastError = undefined;
    } catch (err) {
      const text = oneLine(err);
      if (text !== this.lastError) this.opts.logger.warn(`a BIRD route was deleted, but asking BIRD to restore it failed: ${text}; it returns at BIRD's next kernel scan`);
      this.lastError = text;
    }
  }
}
