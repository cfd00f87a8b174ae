// What the node tells about itself: the parts of its desired state that are
// not applied (for /readyz and /metrics: the lease, each data-plane part, the
// backend's own health), and the status file `weft status` reads. Pure
// functions of a view of the agent's state.
import { join } from 'node:path';
import { writeFileAtomic } from '../core/atomic-write.js';
import type { Backend } from '../../backends/backend.js';
import type { Dataplane, PartStatus } from '../dataplane/dataplane.js';
import type { Lease } from '../subnet/lease.js';
import type { FailingPart, HealthSource } from './health.js';
import { nodeMetrics, type AgentCounters, type MetricFamily } from './metrics.js';
import type { NetworkPolicyEnforcer, PolicyStatus } from './network-policy.js';

/** status.json, as `weft status` reads it. */
export interface AgentStatus {
  node: string;
  publicIP: string;
  iface: string;
  backend: string;
  subnet: string;
  /** The IPv6 subnet on a dual-stack node. */
  ipv6Subnet?: string;
  ready: boolean;
  peers: { subnet: string; publicIP: string; ipv6Subnet?: string; publicIPv6?: string; backend: string; node?: string }[];
  /** Kube mode: what the NetworkPolicy rules in the kernel reflect. */
  policy?: PolicyStatus;
  updatedAt: string;
}

export interface ReadinessView {
  own: Lease | undefined;
  /** Each part of the data plane (undefined before the data plane exists). */
  dataplane: readonly PartStatus[] | undefined;
  backendType: string | undefined;
  /** The backend's own reason (BGP sessions, the udp loop). */
  backendReason: string | undefined;
  /** Why the lease cannot be had (its subnet or PublicIP leased to another node, no free subnet). */
  leaseBlocked?: string;
  /** Why the control plane (etcd) cannot be used now. */
  controlPlane?: FailingPart;
  /** Why NetworkPolicy is not enforced as the API says (kube mode). */
  policy?: FailingPart;
}

/** Every part of the node's desired state that is not applied now, and why; empty when ready. */
export function failingParts(v: ReadinessView): FailingPart[] {
  const failing: FailingPart[] = [];
  if (v.controlPlane) failing.push(v.controlPlane);
  if (v.leaseBlocked) failing.push({ part: 'lease', reason: v.leaseBlocked });
  if (!v.own) return v.leaseBlocked ? failing : [...failing, { part: 'lease', reason: 'no subnet lease yet' }];
  if (!v.dataplane) return [...failing, { part: 'dataplane', reason: 'data plane not programmed yet' }];
  failing.push(
    ...v.dataplane
      .filter((p) => p.state === 'failed' || p.part === 'dataplane')
      .map((p) => ({ part: p.part, reason: p.reason ?? p.state })),
  );
  if (v.backendReason) failing.push({ part: 'backend', reason: `${v.backendType}: ${v.backendReason}` });
  if (v.policy) failing.push(v.policy);
  return failing;
}

/** The agent's state the probes read. */
export interface NodeView {
  own: Lease | undefined;
  dataplane: Pick<Dataplane, 'status' | 'kernelStatus'> | undefined;
  backend: Backend | undefined;
  peers: number;
  counters: AgentCounters;
  /** When the agent's loops last turned (ms since the epoch). */
  lastLoop: number;
  leaseBlocked?: string;
  controlPlane?: FailingPart;
  /** Requests sent to the control plane, by call (etcd only). */
  requests?: Readonly<Record<string, number>>;
  policy?: Pick<NetworkPolicyEnforcer, 'readiness' | 'metrics'>;
  /** weft IPAM's reconcile and borrowed addresses, when the agent runs them. */
  ipam?: { metrics(): MetricFamily[] };
}

/** A loop silent this long makes /healthz fail. */
const STALL_MS = 30_000;

/** /readyz, /healthz and /metrics over a live view of the agent. */
export function nodeHealthSource(view: () => NodeView): HealthSource {
  const failing = (v: NodeView): FailingPart[] =>
    failingParts({
      own: v.own,
      dataplane: v.dataplane?.status(),
      backendType: v.backend?.type,
      backendReason: v.backend?.notReadyReason?.(),
      leaseBlocked: v.leaseBlocked,
      controlPlane: v.controlPlane,
      policy: v.policy?.readiness(),
    });
  return {
    notReady: () => failing(view()),
    unhealthyReason: () => (Date.now() - view().lastLoop > STALL_MS ? 'event loop stalled' : undefined),
    metrics: () => {
      const v = view();
      return nodeMetrics({
        failing: failing(v),
        peers: v.peers,
        backend: v.backend?.type,
        dataplane: v.dataplane?.kernelStatus(),
        counters: v.counters,
        etcdRequests: v.requests,
        extraFamilies: [...(v.backend?.metrics?.() ?? []), ...(v.policy?.metrics() ?? []), ...(v.ipam?.metrics() ?? [])],
      });
    },
  };
}

/** Writes status.json into the run dir, atomically. */
export async function writeAgentStatus(runDir: string, status: AgentStatus): Promise<void> {
  await writeFileAtomic(join(runDir, 'status.json'), JSON.stringify(status, null, 2));
}

/** A lease as status.json lists a peer. */
export function peerStatus(l: Lease): AgentStatus['peers'][number] {
  return {
    subnet: String(l.subnet),
    publicIP: String(l.attrs.publicIP),
    ...(l.ipv6Subnet && l.attrs.publicIPv6 ? { ipv6Subnet: String(l.ipv6Subnet), publicIPv6: String(l.attrs.publicIPv6) } : {}),
    backend: l.attrs.backendType,
    ...(l.attrs.nodeName ? { node: l.attrs.nodeName } : {}),
  };
}
