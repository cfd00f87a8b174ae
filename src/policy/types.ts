// What NetworkPolicy enforcement knows of the cluster: every pod's addresses,
// labels and named ports, every namespace's labels, and every
// networking.k8s.io/v1 NetworkPolicy. The kube watch (subnet/kube) fills it;
// the compiler (policy/compile.ts) turns it into nftables sets and chains.

/** metav1.LabelSelector. An empty selector ({}) selects everything. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export interface LabelSelectorRequirement {
  key: string;
  /** In, NotIn, Exists, DoesNotExist (anything else makes the policy invalid). */
  operator: string;
  values?: string[];
}

/** A container port as the pod spec declares it; `name` is what a policy's named port refers to. */
export interface PodPort {
  name?: string;
  containerPort: number;
  /** TCP (default), UDP or SCTP. */
  protocol: 'TCP' | 'UDP' | 'SCTP';
}

/** A pod as policy sees it. Pods without an address, host-network pods and finished pods are left out. */
export interface PodInfo {
  namespace: string;
  name: string;
  labels: Readonly<Record<string, string>>;
  /** spec.nodeName; enforcement happens only for pods on the agent's own node. */
  nodeName: string;
  /** status.podIPs, canonical text, at most one per family. */
  ips: readonly string[];
  ports: readonly PodPort[];
}

export interface NamespaceInfo {
  name: string;
  labels: Readonly<Record<string, string>>;
}

/**
 * A NetworkPolicy as the API server returned it: metadata checked (namespace
 * and name are strings), the spec unchecked; the compiler validates it and
 * reports what it cannot use.
 */
export interface NetworkPolicyObject {
  namespace: string;
  name: string;
  spec: unknown;
}

/** The cluster as the watches see it at one moment. */
export interface PolicyWorld {
  pods: readonly PodInfo[];
  namespaces: readonly NamespaceInfo[];
  policies: readonly NetworkPolicyObject[];
  /**
   * The newest resourceVersion among everything the world was built from
   * (pods, namespaces and policies share the API server's one counter):
   * the agent reports which one its rules reflect.
   */
  resourceVersion: string;
}
