// What every simulated node of `weft bench scale` shares: the net-conf, the
// underlay each node pretends to sit on, and the messages between the
// benchmark and its worker processes.
import { Cidr, IP } from '../../core/cidr.js';
import type { ExternalInterface } from '../../../backends/backend.js';

/** 4096 /24 subnets: room for 1000 nodes plus joiners with few collisions on random picks. */
export const SCALE_NETWORK = '10.128.0.0/12';
/** The underlay all simulated nodes share; only data in etcd, and inside the reconciler's namespace. */
export const UNDERLAY = '10.99.0.0/16';
export const UNDERLAY_DEV = 'eth0';

export type ScaleBackend = 'host-gw' | 'vxlan';

export function scaleNetConf(backend: ScaleBackend): string {
  return JSON.stringify({ Network: SCALE_NETWORK, SubnetLen: 24, Backend: { Type: backend } });
}

/** Node i's underlay address: 10.99.0.2 upwards (10.99.0.1 is the reconciler's node). */
export function nodeAddress(i: number): IP {
  const n = i + 2;
  return IP.parse(`10.99.${n >> 8}.${n & 255}`);
}

/** The external interface of simulated node i, as the agent would find it. */
export function nodeExt(i: number): ExternalInterface {
  const ip = nodeAddress(i);
  return { name: UNDERLAY_DEV, ip, publicIP: ip, mtu: 1500, connected: [Cidr.parse(UNDERLAY)] };
}

export function nodeName(i: number): string {
  return `scale-${i}`;
}

export interface WorkerStart {
  type: 'start';
  endpoint: string;
  prefix: string;
  backend: ScaleBackend;
  ttlSeconds: number;
  /** Node indexes this worker runs from the start (the steady membership). */
  nodes: number[];
  /** At most this many acquisitions at once while starting. */
  concurrency: number;
}

/** Parent -> worker. */
export type ToWorker =
  | WorkerStart
  | { type: 'join'; node: number }
  | { type: 'counters' }
  | { type: 'seen'; keys: string[] }
  | { type: 'stop' };

export interface WorkerCounters {
  agents: number;
  renewals: number;
  reacquisitions: number;
  /** Lease events delivered to the agents' handlers (each a desired-state computation). */
  eventBatches: number;
  /** Watch snapshots delivered (one per agent's start; more would mean a re-list that changed the snapshot flag). */
  snapshots: number;
  rss: number;
  heapUsed: number;
  /** Milliseconds spent in desired(own, peers), summed. */
  desiredMs: number;
  desiredCalls: number;
  /** From the agents' logs: renewals that failed (each retried), watches re-listed after a compaction, watch streams restarted. */
  renewalFailures: number;
  relists: number;
  watchRetries: number;
  /** The steady nodes' own etcd requests (weft_etcd_requests_total): lists of the lease directory, single-key reads, lease keepalives, all other calls. */
  steadyLists: number;
  steadyRanges: number;
  steadyKeepalives: number;
  steadyOtherRequests: number;
}

/** Worker -> parent. */
export type FromWorker =
  | { type: 'ready'; agents: number }
  | { type: 'joined'; node: number; key: string; at: number }
  | { type: 'counters'; counters: WorkerCounters }
  /** For each key: how many of this worker's steady agents have it in their desired state, and when the last of them got it. */
  | { type: 'seen'; seen: Record<string, { count: number; lastAt: number }> }
  | { type: 'error'; message: string };

/** A wall-clock time in ms with sub-ms precision, comparable across processes on one machine. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}
