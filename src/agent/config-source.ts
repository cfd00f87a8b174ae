// Where the agent follows net-conf.json after start: a file (a mounted
// ConfigMap, which kubelet updates by swapping a `..data` symlink in its
// directory) or the <prefix>/config key in etcd. Both report the text now
// and again whenever it changes; what the text means is the agent's business.
import { watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { readNetConfFile } from '../config/parse.js';
import { oneLine } from '../errors.js';
import { createEtcdClient, type EtcdOptions } from '../subnet/etcd/client.js';
import { Backoff, sleep } from '../core/backoff.js';
import { loggedSteps } from '../core/retry-log.js';
import { configKey } from '../subnet/etcd/layout.js';
import { followWatchStream } from '../subnet/etcd/watch-stream.js';

/** The config text, or why there is none (file missing, key deleted). */
export type NetConfUpdate = { text: string } | { unreadable: string };

export interface NetConfSource {
  /** Where the config lives, for log lines. */
  readonly where: string;
  /** Calls `onUpdate` with the current state, then on every change, until `signal` aborts. Never throws. */
  watch(onUpdate: (update: NetConfUpdate) => void, signal: AbortSignal): Promise<void>;
}

/** Reports each distinct update once: re-reads that find the same text say nothing. */
function deduplicated(onUpdate: (update: NetConfUpdate) => void): (update: NetConfUpdate) => void {
  let last: string | undefined;
  return (update) => {
    const key = 'text' in update ? `t${update.text}` : `u${update.unreadable}`;
    if (key === last) return;
    last = key;
    onUpdate(update);
  };
}

export class FileNetConfSource implements NetConfSource {
  readonly where: string;
  private readonly pollMs: number;
  private readonly debounceMs: number;

  constructor(private readonly opts: { path: string; logger: Logger; pollMs?: number; debounceMs?: number }) {
    this.where = opts.path;
    this.pollMs = opts.pollMs ?? 5000;
    this.debounceMs = opts.debounceMs ?? 50;
  }

  async watch(onUpdate: (update: NetConfUpdate) => void, signal: AbortSignal): Promise<void> {
    const report = deduplicated(onUpdate);
    const read = (): void => {
      try {
        report({ text: readNetConfFile(this.opts.path) });
      } catch (err) {
        report({ unreadable: oneLine(err) });
      }
    };
    // The directory, not the file: kubelet replaces the file's target by renaming `..data`,
    // which a watch on the old file would never see.
    const dir = dirname(this.opts.path);
    let watcher: FSWatcher | undefined;
    let timer: NodeJS.Timeout | undefined;
    let watchProblem: string | undefined;
    const ensureWatcher = (): void => {
      if (watcher) return;
      try {
        watcher = watch(dir, { persistent: false }, () => {
          clearTimeout(timer);
          timer = setTimeout(read, this.debounceMs); // a swap is several renames: read once after them
        });
        watcher.on('error', () => {
          watcher?.close();
          watcher = undefined; // the directory went away; the poll below sets up a new watch
        });
        watchProblem = undefined;
      } catch (err) {
        const text = oneLine(err);
        if (text !== watchProblem) this.opts.logger.warn(`cannot watch ${dir} for config changes (${text}); polling every ${this.pollMs} ms`);
        watchProblem = text;
      }
    };
    try {
      while (!signal.aborted) {
        ensureWatcher();
        read(); // also the backstop for changes a watch cannot see (a symlink pointing outside the directory)
        await sleep(this.pollMs, signal);
      }
    } finally {
      clearTimeout(timer);
      watcher?.close();
    }
  }
}

export class EtcdNetConfSource implements NetConfSource {
  readonly where: string;
  private readonly key: string;

  constructor(private readonly opts: { etcd: EtcdOptions; logger: Logger }) {
    this.key = configKey(opts.etcd.prefix);
    this.where = `${this.key} in etcd`;
  }

  /** Reads the key, follows it from the next revision; after a broken stream, reads again (text is compared, not revisions). */
  async watch(onUpdate: (update: NetConfUpdate) => void, signal: AbortSignal): Promise<void> {
    const report = deduplicated(onUpdate);
    const client = createEtcdClient(this.opts.etcd);
    const backoff = new Backoff(loggedSteps(`watching ${this.key}`, this.opts.logger));
    const deliver = (value: Buffer | undefined): void =>
      report(value ? { text: value.toString('utf8') } : { unreadable: `no network config at ${this.key}` });
    try {
      while (!signal.aborted) {
        try {
          const res = await abortable(client.kv.range({ key: Buffer.from(this.key) }), signal);
          deliver(res.kvs[0]?.value);
          await this.follow(client, BigInt(res.header.revision) + 1n, deliver, backoff, signal);
        } catch (err) {
          if (signal.aborted || !(await backoff.wait(err, signal))) break;
        }
      }
    } finally {
      client.close();
    }
  }

  /** Resolves when aborted or compacted (the caller re-reads); rejects when the stream breaks. */
  private async follow(client: Etcd3, from: bigint, deliver: (value: Buffer | undefined) => void, backoff: Backoff, signal: AbortSignal): Promise<void> {
    await followWatchStream(
      client,
      { key: Buffer.from(this.key), startRevision: from },
      (res) => {
        if (res.created) backoff.reset();
        for (const ev of res.events) deliver(ev.type === 'Put' ? ev.kv.value : undefined);
      },
      signal,
      'config watch',
    );
  }
}

function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
