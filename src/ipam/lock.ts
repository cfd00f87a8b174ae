// The IPAM store's lock: every read-modify-write of a network's state runs
// under flock(2) on a lock file beside it, held across processes (each ADD is
// its own CNI plugin process, the agent's reconcile another). The kernel drops
// it when the holder's descriptor closes, so a plugin killed with SIGKILL
// mid-ADD never leaves it held. The lock is a separate file because the state
// file is replaced by rename: a lock on it would hold the old inode.
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { loadNativeAddon } from '../core/native-addon.js';
import { WeftError } from '../errors.js';

interface FlockAddon {
  flock(fd: number, exclusive: boolean, wait: boolean): boolean;
}

/** A held lock; release() is idempotent. */
export interface HeldLock {
  release(): void;
}

/**
 * Takes the exclusive lock on `path` (created 0600 with its directory),
 * waiting for the holder unless `wait` is false; then returns undefined when
 * another holds it.
 */
export function lockFileSync(path: string, opts: { wait?: boolean } = {}): HeldLock | undefined {
  const addon = loadNativeAddon<FlockAddon>('the IPAM lock');
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  let fd: number;
  try {
    fd = openSync(path, 'a', 0o600);
  } catch (err) {
    throw new WeftError(`cannot open the IPAM lock ${path}: ${(err as Error).message}`, 'check that the directory is writable by root');
  }
  let taken: boolean;
  try {
    taken = addon.flock(fd, true, opts.wait ?? true);
  } catch (err) {
    closeSync(fd);
    throw new WeftError(`cannot lock ${path}: ${(err as Error).message}`, 'the file system must support flock(2)');
  }
  if (!taken) {
    closeSync(fd);
    return undefined;
  }
  let open = true;
  return {
    release() {
      // Closing the only descriptor releases the lock.
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/** Runs `fn` holding the lock on `path`, and releases it however `fn` ends. */
export function withLockSync<T>(path: string, fn: () => T): T {
  const held = lockFileSync(path)!;
  try {
    return fn();
  } finally {
    held.release();
  }
}
