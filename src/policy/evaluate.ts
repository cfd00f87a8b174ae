// Whether one connection is allowed by the NetworkPolicies of this node's
// pods, decided from the policies themselves (spec.ts) rather than from the
// nftables text. After a change the agent asks it about every tracked flow
// of a pod whose rules changed and deletes the conntrack entries of the ones
// now denied, so a connection the change still allows is never touched.
import { IP } from '../core/cidr.js';
import type { TrackedFlow } from '../dataplane/conntrack.js';
import { matchesSelector } from './selector.js';
import { PolicyReader, namedPort, type Direction, type Peer, type Policy, type PortEntry, type Rule } from './spec.js';
import type { PodInfo, PolicyWorld } from './types.js';

/** Answers "is this flow allowed?" for one world and node. */
export class FlowJudge {
  private readonly policies: Policy[] = [];
  private readonly byIP = new Map<string, PodInfo>();
  private readonly nsLabels: Map<string, Readonly<Record<string, string>>>;

  constructor(world: PolicyWorld, private readonly nodeName: string) {
    for (const obj of world.policies) {
      const policy = new PolicyReader().read(obj.namespace, obj.spec);
      if (policy) this.policies.push(policy);
    }
    for (const pod of world.pods) for (const ip of pod.ips) if (!this.byIP.has(ip)) this.byIP.set(ip, pod);
    this.nsLabels = new Map(world.namespaces.map((n) => [n.name, n.labels]));
  }

  /** Allowed by the source's egress policies (when the source is this node's) and the destination's ingress policies (likewise). */
  allows(flow: TrackedFlow): boolean {
    const src = this.byIP.get(flow.src);
    const dst = this.byIP.get(flow.dst);
    return this.direction('egress', src, flow.dst, dst, flow) && this.direction('ingress', dst, flow.src, src, flow);
  }

  /** `pod`'s policies of one direction allow the flow with the other end at `peerIP` (`peer` when it is a pod). */
  private direction(dir: Direction, pod: PodInfo | undefined, peerIP: string, peer: PodInfo | undefined, flow: TrackedFlow): boolean {
    if (!pod || pod.nodeName !== this.nodeName) return true;
    const selecting = this.policies.filter((p) => p[dir] && p.namespace === pod.namespace && matchesSelector(p.selector, pod.labels));
    if (!selecting.length) return true;
    // Named ports are the destination's: the isolated pod's own for ingress, the peer's for egress.
    const portOwner = dir === 'ingress' ? pod : peer;
    return selecting.some((p) => p[dir]!.some((rule) => this.peerMatches(rule, p.namespace, peerIP, peer) && portMatches(rule, flow, portOwner)));
  }

  private peerMatches(rule: Rule, namespace: string, ip: string, pod: PodInfo | undefined): boolean {
    if (rule.peers === 'all') return true;
    return rule.peers.some((peer) => this.onePeer(peer, namespace, ip, pod));
  }

  private onePeer(peer: Peer, namespace: string, ip: string, pod: PodInfo | undefined): boolean {
    if (peer.kind === 'block') {
      const addr = parseIP(ip);
      return addr !== undefined && addr.family === peer.family && peer.ranges.some(([lo, hi]) => addr.value >= lo && addr.value <= hi);
    }
    if (!pod) return false;
    const nsOk = peer.namespaces ? matchesSelector(peer.namespaces, this.nsLabels.get(pod.namespace) ?? {}) : pod.namespace === namespace;
    return nsOk && (!peer.pods || matchesSelector(peer.pods, pod.labels));
  }
}

function portMatches(rule: Rule, flow: TrackedFlow, owner: PodInfo | undefined): boolean {
  if (rule.ports === 'all') return true;
  return rule.ports.some((e) => entryMatches(e, flow, owner));
}

function entryMatches(e: PortEntry, flow: TrackedFlow, owner: PodInfo | undefined): boolean {
  if (flow.proto !== e.protocol) return false;
  if (e.port === undefined) return true;
  if (flow.dport === undefined) return false;
  if (typeof e.port === 'number') return flow.dport >= e.port && flow.dport <= (e.endPort ?? e.port);
  return namedPort(owner, e) === flow.dport;
}

function parseIP(text: string): IP | undefined {
  try {
    return IP.parse(text);
  } catch {
    return undefined;
  }
}
