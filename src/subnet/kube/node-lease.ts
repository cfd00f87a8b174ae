// A node object as a lease: the subnet is spec.podCIDR, the rest is published
// in annotations. Everything on a node object is untrusted (anyone who may
// patch nodes can write it), so it goes through the etcd manager's validator.
import type { NetConf } from '../../config/netconf.js';
import { Cidr } from '../../core/cidr.js';
import { parseLeaseEntry } from '../etcd/lease-value.js';
import type { Lease, LeaseAttrs, LeaseValue } from '../lease.js';

export const ANNOTATION_PREFIX = 'weft.io/';
/** flannel's names, read (never written) so nodes can be migrated from flannel. */
export const FLANNEL_ANNOTATION_PREFIX = 'flannel.alpha.coreos.com/';

export const Annotation = {
  publicIP: `${ANNOTATION_PREFIX}public-ip`,
  backendType: `${ANNOTATION_PREFIX}backend-type`,
  backendData: `${ANNOTATION_PREFIX}backend-data`,
  /** Marks nodes whose annotations weft manages. */
  managed: `${ANNOTATION_PREFIX}kube-subnet-manager`,
} as const;

const MAX_ANNOTATION_BYTES = 8 * 1024;

/** The parts of a node object weft reads (plain JSON from a watch, or the client's V1Node). */
export interface NodeObject {
  metadata?: { name?: string; annotations?: Record<string, string> | null; resourceVersion?: string };
  spec?: { podCIDR?: string } | null;
}

/**
 * - `lease`: the node's valid lease
 * - `none`: the node has no lease yet (no podCIDR, or weft has not published) — not an error
 * - `invalid`: something is there but unusable; `reason` says what
 */
export type NodeLease = { kind: 'lease'; lease: Lease } | { kind: 'none' } | { kind: 'invalid'; reason: string };

/** The node's subnet (spec.podCIDR) or undefined; throws naming what is wrong. */
export function podCidrOf(node: NodeObject): Cidr | undefined {
  const text = node.spec?.podCIDR;
  if (text === undefined || text === null || text === '') return undefined;
  if (typeof text !== 'string') throw new Error('spec.podCIDR is not a string');
  try {
    return Cidr.parse(text);
  } catch (err) {
    throw new Error(`spec.podCIDR ${(err as Error).message}`);
  }
}

export function nodeLease(node: NodeObject, net: NetConf): NodeLease {
  const name = node.metadata?.name ?? '';
  const ann = node.metadata?.annotations ?? {};
  const prefix = [ANNOTATION_PREFIX, FLANNEL_ANNOTATION_PREFIX].find((p) => typeof ann[`${p}backend-type`] === 'string');
  let subnet: Cidr | undefined;
  try {
    subnet = podCidrOf(node);
  } catch (err) {
    return prefix ? { kind: 'invalid', reason: (err as Error).message } : { kind: 'none' };
  }
  if (!subnet || !prefix) return { kind: 'none' };

  const read = (key: string): string | undefined => {
    const v = ann[`${prefix}${key}`];
    return typeof v === 'string' ? v : undefined;
  };
  for (const key of ['public-ip', 'backend-type', 'backend-data']) {
    const v = read(key);
    if (v !== undefined && Buffer.byteLength(v) > MAX_ANNOTATION_BYTES) {
      return { kind: 'invalid', reason: `annotation ${prefix}${key} is larger than ${MAX_ANNOTATION_BYTES} bytes` };
    }
  }
  const value: LeaseValue = { PublicIP: read('public-ip') as string, BackendType: read('backend-type') as string, NodeName: name };
  const data = read('backend-data');
  if (data !== undefined && data !== '') {
    try {
      value.BackendData = JSON.parse(data);
    } catch {
      return { kind: 'invalid', reason: `annotation ${prefix}backend-data is not JSON` };
    }
  }
  // podCIDR lengths come from kube-controller-manager, not from SubnetLen.
  const entry = parseLeaseEntry(subnet.toKey(), JSON.stringify(value), { ...net, subnetLen: subnet.prefixLen });
  if (!entry.ok) return { kind: 'invalid', reason: entry.reason };
  return { kind: 'lease', lease: entry.lease };
}

/** The annotations that publish `attrs`; values are strings, as Kubernetes wants them. */
export function leaseAnnotations(attrs: LeaseAttrs): Record<string, string> {
  return {
    [Annotation.publicIP]: attrs.publicIP.toString(),
    [Annotation.backendType]: attrs.backendType,
    [Annotation.backendData]: JSON.stringify(attrs.backendData ?? null),
    [Annotation.managed]: 'true',
  };
}
