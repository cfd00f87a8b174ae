// The API server's list-then-watch protocol, once for every resource weft
// follows (nodes for leases; pods, namespaces and networkpolicies for
// policy): list, watch from the list's resourceVersion, resume a dropped
// watch from the last resourceVersion seen, list again after 410 Gone (an
// ERROR event or an HTTP status), back off on failures.
import type { Logger } from 'pino';
import { Backoff, sleep } from '../../core/backoff.js';
import { loggedSteps } from '../../core/retry-log.js';
import { KubeApiError, type KubeCollection, type KubeList, type KubeWatchEvent, type KubeWatchOptions } from './api.js';

/** The calls one list-and-watch makes: KubeApi's list for the resource and its watch. */
export interface ListWatchSource<T> {
  list(signal: AbortSignal): Promise<KubeList<T>>;
  watch(resourceVersion: string, opts: KubeWatchOptions, onEvent: (event: KubeWatchEvent) => boolean): Promise<void>;
}

/** A watch event past the loop: ERROR events are the loop's own business. */
export interface KubeObjectEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';
  object: Record<string, any>;
}

export interface ListWatchOptions<T> {
  /** The resource, plural ("nodes"): log lines and errors name it. */
  resource: KubeCollection;
  source: ListWatchSource<T>;
  logger: Logger;
  /** The API server ends each watch after about this long and it is resumed (default 300 s, jittered ±10 %). */
  watchTimeoutSeconds?: number;
  /** A (re-)list: everything there is now, replacing what the caller holds. */
  onList(items: T[], resourceVersion: string): void;
  /** One ADDED, MODIFIED, DELETED or BOOKMARK event; its resourceVersion is already recorded. */
  onEvent(event: KubeObjectEvent): void;
  /** A failed list or watch, before the backoff wait (410 Gone is not a failure: it lists again). */
  onError?(err: unknown): void;
  /** A list answered or a watch accepted after a failure, or the first list. */
  onHealthy?(): void;
}

/** Lists and watches until `signal` aborts (then resolves); never rejects for an API failure. */
export async function listAndWatch<T>(opts: ListWatchOptions<T>, signal: AbortSignal): Promise<void> {
  const { resource, source, logger } = opts;
  const backoff = new Backoff({ maxMs: 5000, ...loggedSteps(`watching ${resource}`, logger) });
  let resourceVersion: string | undefined;
  let failing = true;
  const healthy = (): void => {
    if (failing) opts.onHealthy?.();
    failing = false;
  };
  while (!signal.aborted) {
    try {
      if (resourceVersion === undefined) {
        const list = await source.list(signal);
        opts.onList(list.items, list.resourceVersion);
        resourceVersion = list.resourceVersion;
        healthy();
      }
      const started = Date.now();
      let received = 0;
      let expired = false;
      let failure: Error | undefined;
      const watchOpts = { timeoutSeconds: watchTimeout(opts.watchTimeoutSeconds), signal, onOpen: healthy };
      await source.watch(resourceVersion, watchOpts, (event) => {
        if (event.type === 'ERROR') {
          const code = event.object?.code;
          if (code === 410) expired = true;
          else failure = new Error(`watch ${resource}: ERROR event ${code} (${String(event.object?.message ?? '').slice(0, 200)})`);
          return false;
        }
        received++;
        const rv = event.object?.metadata?.resourceVersion;
        if (typeof rv === 'string' && rv) resourceVersion = rv;
        opts.onEvent(event as KubeObjectEvent);
        return true;
      });
      if (expired) {
        logger.info({ resourceVersion }, `${singular(resource)} watch expired (410 Gone); listing again`);
        resourceVersion = undefined;
        continue;
      }
      if (failure) throw failure;
      backoff.reset();
      healthy();
      // A server that ends watches at once must not make this loop spin.
      if (received === 0 && Date.now() - started < 1000) await sleep(1000, signal);
    } catch (err) {
      if (signal.aborted) break;
      if (err instanceof KubeApiError && err.status === 410) {
        logger.info(`${singular(resource)} watch expired (410 Gone); listing again`);
        resourceVersion = undefined;
        continue;
      }
      failing = true;
      opts.onError?.(err);
      if (!(await backoff.wait(err, signal))) break;
    }
  }
}

function watchTimeout(base = 300): number {
  // Jittered so a fleet of agents does not re-watch in lockstep.
  return Math.max(1, Math.round(base * (0.9 + Math.random() * 0.2)));
}

function singular(resource: KubeCollection): string {
  return resource === 'networkpolicies' ? 'networkpolicy' : resource.replace(/s$/, '');
}
