// The agent's pass over the node's IPAM stores, one network at a time and
// under that store's lock: free what GC decides (network namespaces gone,
// in kube mode pods gone from this node), keep borrowedOut equal to the
// addresses of this node's subnets that peers publish as borrowed, and drop
// a pinned address's reservation once another node holds it for its pod.
// What it changed comes back for the log and /metrics; the files are the
// store's (src/ipam/store.ts).
import { existsSync, readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { IP } from '../core/cidr.js';
import { applyGc, decideGc, type GcDecision, type NodePod } from '../ipam/gc.js';
import type { IpamState, Reservation } from '../ipam/state.js';
import { storePaths, updateState, type StorePaths } from '../ipam/store.js';

/** One network's store under the IPAM directory (a directory holding state.json). */
export interface NetworkStore {
  network: string;
  paths: StorePaths;
}

/** Every network store under `root`; none when the directory does not exist yet. */
export function networkStores(root: string): NetworkStore[] {
  let names: string[];
  try {
    names = readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: NetworkStore[] = [];
  for (const network of names) {
    let paths: StorePaths;
    try {
      paths = storePaths(root, network);
    } catch {
      continue; // not a name the plugin would have made
    }
    if (existsSync(paths.state)) out.push({ network, paths });
  }
  return out;
}

/**
 * The netns paths to count as existing: those that exist, and those whose
 * directory this process cannot see (a netns under another mount namespace
 * must never count as gone). `hidden` names the directories it could not see.
 */
export function visibleNetns(netnsPaths: Iterable<string>, exists: (path: string) => boolean = existsSync): { existing: Set<string>; hidden: string[] } {
  const existing = new Set<string>();
  const hidden = new Set<string>();
  for (const path of netnsPaths) {
    if (!path) continue;
    const dir = netnsDirOf(path);
    if (!exists(dir)) {
      hidden.add(dir);
      existing.add(path);
    } else if (exists(path)) {
      existing.add(path);
    }
  }
  return { existing, hidden: [...hidden].sort() };
}

/** The directory that says whether a netns path is visible: /proc for /proc/PID/ns/net (PID's directory goes with it), else its own. */
function netnsDirOf(path: string): string {
  return /^\/proc\/\d+\/ns\//.test(path) ? '/proc' : dirname(path);
}

export interface ReconcileInputs {
  now: Date;
  /** Free allocations (absent: only borrowedOut is synced). */
  gc?: {
    graceMs: number;
    /** The given netns paths that exist (visibleNetns); absent: network namespaces are not checked. */
    existingNetns?: (paths: string[]) => Set<string>;
    /** This node's pods (kube mode, once listed); absent: pods are not checked. */
    pods?: NodePod[];
  };
  /** The peers' borrowed addresses inside this node's subnets; absent until the peers are known. */
  borrowedOut?: readonly IP[];
}

export interface StoreOutcome {
  network: string;
  freed: GcDecision[];
  lent: string[];
  returned: string[];
  /** Reservations dropped because another node now holds the address for the pod. */
  moved: Reservation[];
  /** The state after the pass. */
  state: IpamState;
}

/** One pass over one store, under its lock; a damaged store throws (store.ts's WeftError) and is left as it is. */
export function reconcileStore(store: NetworkStore, inputs: ReconcileInputs): StoreOutcome {
  return updateState(store.paths, (before) => {
    let state = before;
    let freed: GcDecision[] = [];
    if (inputs.gc) {
      const { existingNetns, pods, graceMs } = inputs.gc;
      const netns = existingNetns?.(state.allocations.map((a) => a.netns).filter(Boolean));
      freed = decideGc(state.allocations, inputs.now, { ...(netns ? { existingNetns: netns } : {}), ...(pods ? { pods } : {}) }, graceMs);
      state = applyGc(state, freed, inputs.now);
    }
    let lent: string[] = [];
    let returned: string[] = [];
    let moved: Reservation[] = [];
    if (inputs.borrowedOut) {
      const next = [...new Set(inputs.borrowedOut.map(String))].sort();
      const had = new Set(state.borrowedOut.map((a) => IP.parse(a).toString()));
      lent = next.filter((a) => !had.has(a));
      returned = [...had].filter((a) => !next.includes(a));
      moved = state.reservations.filter((r) => next.includes(IP.parse(r.address).toString()));
      if (lent.length || returned.length || moved.length) {
        state = { ...state, borrowedOut: next, reservations: state.reservations.filter((r) => !moved.includes(r)) };
      }
    }
    return { state, result: { network: store.network, freed, lent, returned, moved, state } };
  });
}

/** The store of `network` under `root` (existing or not). */
export function storeOf(root: string, network: string): NetworkStore {
  return { network, paths: storePaths(root, network) };
}
