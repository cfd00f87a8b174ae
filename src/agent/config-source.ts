// The net-conf source for a file: a mounted ConfigMap, which kubelet updates
// by swapping a `..data` symlink in its directory. (The etcd key's source is
// src/subnet/etcd/config-watch.ts.)
import { watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { readNetConfFile } from '../config/parse.js';
import { deduplicated, type NetConfSource, type NetConfUpdate } from '../config/source.js';
import { oneLine } from '../errors.js';
import { sleep } from '../core/backoff.js';

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
