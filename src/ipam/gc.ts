// Which allocations to free, decided from whatever this node knows: the pure
// decision table behind the CNI GC verb and the agent's reconcile. Each source
// is optional; an allocation is freed only on a source's positive evidence,
// never because a source is missing.
//
// | source known             | allocation                              | decision                  |
// |--------------------------|-----------------------------------------|---------------------------|
// | runtime valid attachments| (containerId, ifname) not in the list   | free: not-attached        |
// | existing netns paths     | its netns path is not among them        | free: netns-gone          |
// | pods on this node (API)  | no pod of its namespace/name            | free: pod-gone            |
// | pods on this node (API)  | a pod of that name with another uid     | free: pod-replaced        |
// | netns or pods            | younger than the grace period           | keep (a pod being created)|
// | netns or pods            | no netns path / no pod recorded         | keep (nothing to judge by)|
// | none                     | any                                     | keep                      |
//
// The runtime's list is authoritative (CNI 1.1: free everything not in
// `cni.dev/valid-attachments`), so no grace applies to it. The agent's own
// sources are snapshots taken at some instant; an ADD running meanwhile is
// protected by the grace period. The first matching row, in the table's
// order, gives the reason.
import { releaseAllocations } from './allocator.js';
import type { Allocation, Freed, IpamState } from './state.js';

/** One entry of CNI 1.1 GC's `cni.dev/valid-attachments`. */
export interface Attachment {
  containerID: string;
  ifname: string;
}

/** A pod the API server says is on this node. */
export interface NodePod {
  namespace: string;
  name: string;
  uid: string;
}

export interface GcSources {
  validAttachments?: Attachment[];
  /** The network namespace paths that exist now. */
  existingNetns?: Set<string>;
  pods?: NodePod[];
}

export type GcReason = 'not-attached' | 'netns-gone' | 'pod-gone' | 'pod-replaced';

export interface GcDecision {
  allocation: Allocation;
  reason: GcReason;
}

/** The default grace: longer than a slow pod start (image pulled, sandbox made) takes between ADD and the API showing the pod. */
export const DEFAULT_GC_GRACE_MS = 5 * 60_000;

export function decideGc(allocations: Allocation[], now: Date, sources: GcSources, graceMs = DEFAULT_GC_GRACE_MS): GcDecision[] {
  const attached = sources.validAttachments && new Set(sources.validAttachments.map((a) => `${a.containerID}\u0000${a.ifname}`));
  const pods = sources.pods && new Map(sources.pods.map((p) => [`${p.namespace}/${p.name}`, p]));
  const out: GcDecision[] = [];
  for (const a of allocations) {
    const reason = decideOne(a, now, graceMs, attached, sources.existingNetns, pods);
    if (reason) out.push({ allocation: a, reason });
  }
  return out;
}

function decideOne(a: Allocation, now: Date, graceMs: number, attached: Set<string> | undefined, netns: Set<string> | undefined, pods: Map<string, NodePod> | undefined): GcReason | undefined {
  if (attached && !attached.has(`${a.containerId}\u0000${a.ifname}`)) return 'not-attached';
  // An unreadable time cannot protect an allocation for ever: it counts as old.
  const since = Date.parse(a.since);
  if (Number.isFinite(since) && now.getTime() - since < graceMs) return undefined;
  if (netns && a.netns && !netns.has(a.netns)) return 'netns-gone';
  if (pods && a.pod) {
    const pod = pods.get(`${a.pod.namespace}/${a.pod.name}`);
    if (!pod) return 'pod-gone';
    if (a.pod.uid && pod.uid !== a.pod.uid) return 'pod-replaced';
  }
  return undefined;
}

/**
 * The state after freeing what `decisions` chose, with the outcome recorded
 * for `weft ipam` and /metrics. Pinned addresses become reservations for their
 * pod, as on DEL: a pod gone from this node may be recreated or rescheduled.
 */
export function applyGc(state: IpamState, decisions: GcDecision[], now: Date): IpamState {
  const freed: Freed[] = decisions.map(({ allocation: a, reason }) => ({
    address: a.address,
    containerId: a.containerId,
    ...(a.pod ? { pod: { ...a.pod } } : {}),
    reason,
  }));
  return { ...releaseAllocations(state, decisions.map((d) => d.allocation), now), lastReconcile: { at: now.toISOString(), freed } };
}
