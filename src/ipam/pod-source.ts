// What weft IPAM's agent half asks about pods, as an interface: the kube
// pod watch (src/subnet/kube/ipam-pod-watch.ts) answers it, the agent and
// the tests see only this.
import type { IP } from '../core/cidr.js';
import type { NodePod } from './gc.js';

/** A pod as IPAM sees it. */
export interface IpamPod extends NodePod {
  nodeName: string;
  /** status.podIPs, canonical text. */
  ips: readonly string[];
  /** Not Succeeded or Failed: its addresses are in use. */
  live: boolean;
}

/** What the agent's IPAM asks about pods (the kube watch, or a test's stand-in). */
export interface IpamPodSource {
  /** This node's pods; undefined until the first list. */
  nodePods(): NodePod[] | undefined;
  /** A live pod other than `except` whose status.podIPs hold `ip`; undefined before the first list too. */
  holderOf(ip: IP, except: { namespace: string; name: string }): IpamPod | undefined;
  /** True once the pods have been listed. */
  listed(): boolean;
  /** A fresh read of one pod (plain JSON); undefined when it does not exist. */
  getPod(namespace: string, name: string, signal?: AbortSignal): Promise<Record<string, any> | undefined>;
}

