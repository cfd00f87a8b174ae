// Every node's lease as the node watch sees it. Each watch event carries the
// whole Node object (several KB), and nearly all of them are kubelet status
// heartbeats that change nothing weft reads. So an event is first compared
// with the last one seen for that node on the few fields weft reads
// (spec.podCIDR, spec.podCIDRs, the weft.io/ and flannel annotations), with
// no allocation; only a change there is parsed into a lease.
import type { NetConf } from '../../config/netconf.js';
import { sameLeaseAttrs, sameSubnets, type Lease, type LeaseEvent } from '../lease.js';
import { ANNOTATION_PREFIX, FLANNEL_ANNOTATION_PREFIX, type NodeObject } from './node-lease.js';

/** The fields of a node weft's lease comes from, as last seen. */
interface Inputs {
  podCIDR: unknown;
  /** A copy when it is a list. */
  podCIDRs: unknown;
  /** The weft.io/ and flannel annotations. */
  annotations: Map<string, unknown>;
}

interface Entry {
  /** The net-conf the lease was read with: another one means reading it again. */
  net: NetConf;
  inputs: Inputs;
  lease: Lease | undefined;
}

export class NodeLeaseTable {
  private nodes = new Map<string, Entry>();

  /** `parse`: a node object's lease (undefined for none), called only when the node's inputs changed. */
  constructor(private readonly parse: (node: NodeObject, net: NetConf) => Lease | undefined) {}

  /** The lease events one watch event (ADDED, MODIFIED or DELETED) causes. */
  apply(type: 'ADDED' | 'MODIFIED' | 'DELETED', node: NodeObject, net: NetConf): LeaseEvent[] {
    const name = nameOf(node);
    const before = this.nodes.get(name);
    if (type === 'DELETED') {
      this.nodes.delete(name);
      return leaseChange(before?.lease, undefined);
    }
    if (before && before.net === net && sameInputs(before.inputs, node)) return [];
    const after = this.read(node, net);
    this.nodes.set(name, after);
    return leaseChange(before?.lease, after.lease);
  }

  /**
   * A full list of nodes replaces what is known: the events that turn the
   * known leases into the listed ones (each lease "added" on the first list).
   * Nodes whose inputs did not change are not read again.
   */
  replace(items: NodeObject[], net: NetConf): LeaseEvent[] {
    const fresh = new Map<string, Entry>();
    for (const node of items) {
      const known = this.nodes.get(nameOf(node));
      fresh.set(nameOf(node), known && known.net === net && sameInputs(known.inputs, node) ? known : this.read(node, net));
    }
    const events: LeaseEvent[] = [];
    for (const [name, e] of this.nodes) if (e.lease && !fresh.get(name)?.lease) events.push({ type: 'removed', lease: e.lease });
    for (const [name, e] of fresh) if (e.lease) events.push(...leaseChange(this.nodes.get(name)?.lease, e.lease));
    this.nodes = fresh;
    return events;
  }

  private read(node: NodeObject, net: NetConf): Entry {
    return { net, inputs: inputsOf(node), lease: this.parse(node, net) };
  }
}

function nameOf(node: NodeObject): string {
  return String(node?.metadata?.name ?? '');
}

function isLeaseAnnotation(key: string): boolean {
  return key.startsWith(ANNOTATION_PREFIX) || key.startsWith(FLANNEL_ANNOTATION_PREFIX);
}

function inputsOf(node: NodeObject): Inputs {
  const list = node.spec?.podCIDRs;
  const annotations = new Map<string, unknown>();
  const ann = node.metadata?.annotations;
  if (ann && typeof ann === 'object') for (const key in ann) if (isLeaseAnnotation(key)) annotations.set(key, ann[key]);
  return { podCIDR: node.spec?.podCIDR, podCIDRs: Array.isArray(list) ? [...list] : list, annotations };
}

/** Whether `node` has the inputs last seen; reads only those fields and allocates nothing. */
function sameInputs(a: Inputs, node: NodeObject): boolean {
  const spec = node.spec;
  if (spec?.podCIDR !== a.podCIDR) return false;
  const list: unknown = spec?.podCIDRs;
  if (Array.isArray(list)) {
    const was = a.podCIDRs;
    if (!Array.isArray(was) || was.length !== list.length) return false;
    for (let i = 0; i < list.length; i++) if (list[i] !== was[i]) return false;
  } else if (list !== a.podCIDRs) return false;
  const ann = node.metadata?.annotations;
  let seen = 0;
  if (ann && typeof ann === 'object') {
    for (const key in ann) {
      if (!isLeaseAnnotation(key)) continue;
      seen++;
      if (!a.annotations.has(key) || a.annotations.get(key) !== ann[key]) return false;
    }
  }
  return seen === a.annotations.size;
}

function leaseChange(before: Lease | undefined, after: Lease | undefined): LeaseEvent[] {
  if (before && after && sameSubnets(before, after)) {
    return sameLeaseAttrs(before.attrs, after.attrs) ? [] : [{ type: 'added', lease: after }];
  }
  const events: LeaseEvent[] = [];
  if (before) events.push({ type: 'removed', lease: before });
  if (after) events.push({ type: 'added', lease: after });
  return events;
}
