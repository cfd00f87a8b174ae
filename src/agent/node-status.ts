// What the node tells about itself: the parts of its desired state that are
// not applied (for /readyz and /metrics), and the status file `weft status`
// reads. Pure functions of a view of the agent's state.
import { join } from 'node:path';
import { writeFileAtomic } from '../core/atomic-write.js';
import type { ReconcilerStatus } from '../dataplane/reconciler.js';
import type { Lease } from '../subnet/lease.js';
import type { FailingPart } from './health.js';

/** status.json, as `weft status` reads it. */
export interface AgentStatus {
  node: string;
  publicIP: string;
  iface: string;
  backend: string;
  subnet: string;
  ready: boolean;
  peers: { subnet: string; publicIP: string; backend: string; node?: string }[];
  updatedAt: string;
}

export interface ReadinessView {
  own: Lease | undefined;
  /** The first programming pass has run. */
  programmed: boolean;
  dataplane: ReconcilerStatus | undefined;
  /** Why weft's nftables table is not as wanted. */
  nftError: string | undefined;
  /** Why each part of the last programming pass failed. */
  partErrors: ReadonlyMap<string, string>;
  backendType: string | undefined;
  /** The backend's own reason (BGP sessions, the udp loop). */
  backendReason: string | undefined;
}

/** Every part of the node's desired state that is not applied now, and why; empty when ready. */
export function failingParts(v: ReadinessView): FailingPart[] {
  if (!v.own) return [{ part: 'lease', reason: 'no subnet lease yet' }];
  if (!v.programmed) return [{ part: 'dataplane', reason: 'data plane not programmed yet' }];
  const failing: FailingPart[] = [];
  const dp = v.dataplane;
  for (const dst of dp?.conflicts ?? []) {
    failing.push({ part: 'routes', reason: `a route to ${dst} exists that weft does not own (no proto 147); weft will not replace it — remove it or change that subnet` });
  }
  for (const link of dp?.missingLinks ?? []) failing.push({ part: 'links', reason: `device ${link} does not exist; its routes wait for it` });
  for (const f of dp?.failures ?? []) failing.push({ part: 'routes', reason: `the kernel refused ${f}` });
  if (dp?.lastError) failing.push({ part: 'routes', reason: dp.lastError });
  if (v.nftError) failing.push({ part: 'nftables', reason: v.nftError });
  for (const [part, reason] of v.partErrors) {
    // The reconciler's live status above is newer than the pass's outcome, and so is the table's.
    if (part === 'routes' || (part === 'nftables' && v.nftError)) continue;
    failing.push({ part, reason });
  }
  if (v.backendReason) failing.push({ part: 'backend', reason: `${v.backendType}: ${v.backendReason}` });
  return failing;
}

/** Writes status.json into the run dir, atomically. */
export async function writeAgentStatus(runDir: string, status: AgentStatus): Promise<void> {
  await writeFileAtomic(join(runDir, 'status.json'), JSON.stringify(status, null, 2));
}

/** A lease as status.json lists a peer. */
export function peerStatus(l: Lease): AgentStatus['peers'][number] {
  return { subnet: String(l.subnet), publicIP: String(l.attrs.publicIP), backend: l.attrs.backendType, ...(l.attrs.nodeName ? { node: l.attrs.nodeName } : {}) };
}
