// The IPAM store: one state.json per node and network, under a lock file
// beside it. Every change is one atomic replace (src/core/atomic-write.ts,
// fsynced), so a plugin killed or a power cut at any instant leaves the old
// state or the new one. A missing store is empty (a fresh node); a corrupt one
// is an error, never an empty state, which would hand out addresses twice.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { IP } from '../core/cidr.js';
import { nodeAtomicFs, writeFileAtomicSync, type AtomicFs } from '../core/atomic-write.js';
import { WeftError } from '../errors.js';
import { withLockSync } from './lock.js';
import { STATE_VERSION, emptyState, type IpamState } from './state.js';

export const DEFAULT_IPAM_DIR = '/var/lib/cni/weft-ipam';
const MAX_STATE_BYTES = 16 << 20;

export interface StorePaths {
  dir: string;
  state: string;
  lock: string;
}

/** Where a network's state lives; the network name is the CNI config's `name`. */
export function storePaths(root: string, network: string): StorePaths {
  // CNI's own rule for network names, which also keeps the name a single path element.
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(network) || network === '..') {
    throw new WeftError(`network name "${network.slice(0, 64)}" cannot name an IPAM store`, 'use letters, digits, _, . and - (as CNI requires)');
  }
  const dir = join(root, network);
  return { dir, state: join(dir, 'state.json'), lock: join(dir, 'lock') };
}

function corrupt(file: string, why: string): WeftError {
  return new WeftError(
    `IPAM state ${file} is corrupt (${why}); weft will not guess which addresses are in use`,
    'restore the file, or remove it once no pod on this node holds an address from it',
  );
}

/** Reads a state file: a missing one is empty, a damaged one a WeftError naming it. */
export function readState(file: string): IpamState {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
    throw new WeftError(`cannot read IPAM state ${file}: ${(err as Error).message}`, 'check the file and its permissions');
  }
  if (text.length > MAX_STATE_BYTES) throw corrupt(file, `larger than ${MAX_STATE_BYTES} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw corrupt(file, `not JSON: ${(err as Error).message}`);
  }
  return checkState(file, v);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The shape the allocator relies on; anything else is corruption, named by the first bad field. */
function checkState(file: string, v: unknown): IpamState {
  if (!isRecord(v)) throw corrupt(file, 'not an object');
  if (v.version !== STATE_VERSION) throw corrupt(file, `version ${JSON.stringify(v.version)}, expected ${STATE_VERSION}`);
  for (const key of ['allocations', 'reservations', 'borrowedOut'] as const) {
    if (!Array.isArray(v[key])) throw corrupt(file, `${key} is not a list`);
  }
  if (!isRecord(v.lastPosition)) throw corrupt(file, 'lastPosition is not an object');
  const address = (where: string, a: unknown) => {
    try {
      IP.parse(a as string);
    } catch {
      throw corrupt(file, `${where} has no valid address`);
    }
  };
  (v.allocations as unknown[]).forEach((a, i) => {
    if (!isRecord(a)) throw corrupt(file, `allocation ${i} is not an object`);
    address(`allocation ${i}`, a.address);
    if (typeof a.containerId !== 'string' || typeof a.ifname !== 'string' || typeof a.since !== 'string' || typeof a.pinned !== 'boolean') {
      throw corrupt(file, `allocation ${i} lacks containerId, ifname, since or pinned`);
    }
  });
  (v.reservations as unknown[]).forEach((r, i) => {
    if (!isRecord(r) || !isRecord(r.pod)) throw corrupt(file, `reservation ${i} has no pod`);
    address(`reservation ${i}`, r.address);
  });
  (v.borrowedOut as unknown[]).forEach((b, i) => address(`borrowed address ${i}`, b));
  return v as unknown as IpamState;
}

/** Replaces the state file in one atomic, fsynced step; `io` is for tests that stop it midway. */
export function writeState(file: string, state: IpamState, io: AtomicFs = nodeAtomicFs): void {
  writeFileAtomicSync(file, JSON.stringify(state, null, 1) + '\n', { mode: 0o600, dirMode: 0o700 }, io);
}

/**
 * One read-modify-write under the network's lock: `change` gets the current
 * state and returns the new one (the same object when nothing changed, which
 * skips the write) and a result for the caller.
 */
export function updateState<T>(paths: StorePaths, change: (state: IpamState) => { state: IpamState; result: T }): T {
  return withLockSync(paths.lock, () => {
    const before = readState(paths.state);
    const { state, result } = change(before);
    if (state !== before) writeState(paths.state, state);
    return result;
  });
}
