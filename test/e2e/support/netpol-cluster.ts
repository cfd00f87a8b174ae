// The NetworkPolicy matrix's cluster: upstream's layout (namespaces x, y, z
// labelled ns=x..., pods a, b, c in each labelled pod=a...), nine lab pods
// spread over three nodes so that every namespace and every pod name has one
// pod on each node, each pod registered in the stand-in API server with its
// labels, node and named container ports, and echo servers in every pod.
// NetpolWorld makes a case's changes through the API, waits until every
// agent's rules reflect them, probes and puts everything back.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lab, LabNode, LabPod } from '../../../src/lab/lab.js';
import type { ApiServerProcess } from '../../fixtures/kube/apiserver-process.js';
import { Prober, sctpSenderPath, serversListening, startSctpSender, startServers, stopGroup, type ProbePod, type ProbeSpec } from './netpol-probe.js';
import { mismatches, type Observed, type Reachability } from './netpol-truth.js';
import { bridgeAgentMetrics, metricsAt } from './kube-lab.js';

export const NAMESPACES = ['x', 'y', 'z'] as const;
export const POD_NAMES = ['a', 'b', 'c'] as const;
export const POD_IDS: readonly string[] = NAMESPACES.flatMap((ns) => POD_NAMES.map((p) => `${ns}/${p}`));

/** The node (index into lab.nodes) of pod `id`: a Latin square, x/a x/b x/c on n1 n2 n3, y/a y/b y/c on n2 n3 n1, z/... on n3 n1 n2. */
export function nodeIndexOf(id: string): number {
  const [ns, pod] = id.split('/') as [string, string];
  return (NAMESPACES.indexOf(ns as never) + POD_NAMES.indexOf(pod as never)) % 3;
}

export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
}

/** Every pod's container ports, named as upstream names them, for policies' named ports. */
export const CONTAINER_PORTS: readonly ContainerPort[] = [
  { name: 'serve-80-tcp', containerPort: 80, protocol: 'TCP' },
  { name: 'serve-81-tcp', containerPort: 81, protocol: 'TCP' },
  { name: 'serve-80-udp', containerPort: 80, protocol: 'UDP' },
  { name: 'serve-81-udp', containerPort: 81, protocol: 'UDP' },
  { name: 'serve-80-sctp', containerPort: 80, protocol: 'SCTP' },
  { name: 'serve-81-sctp', containerPort: 81, protocol: 'SCTP' },
  { name: 'dns', containerPort: 53, protocol: 'UDP' },
];

export const nsLabels = (ns: string): Record<string, string> => ({ ns, 'kubernetes.io/metadata.name': ns });
export const podLabels = (id: string): Record<string, string> => ({ pod: id.split('/')[1]! });

/** What the world asks of the stand-in API server (each change resolves to the new resourceVersion). */
export type PolicyApi = Pick<ApiServerProcess, 'upsertNamespace' | 'upsertPod' | 'deletePod' | 'upsertPolicy' | 'deletePolicy'>;


interface WorldPod extends ProbePod {
  lab: LabPod;
  node: LabNode;
  labels: Record<string, string>;
  serversPid: number;
}

/** A probe round's outcome: what was observed (after re-probing disagreements) and how many probes were re-probed. */
export interface MatrixResult {
  observed: Observed;
  reprobed: number;
}

export class NetpolWorld {
  private readonly pods = new Map<string, WorldPod>();
  private readonly nsLabelsNow = new Map<string, Record<string, string>>();
  private readonly policies = new Set<string>();
  private readonly prober: Prober;
  /** The newest resourceVersion an API change returned. */
  private lastRv = 0n;
  private readonly metricsSockets: string[] = [];
  private readonly bridgePids: number[] = [];
  /** "from>to" -> pid of the SCTP sender between those pods. */
  private readonly senders = new Map<string, number>();

  private constructor(
    readonly lab: Lab,
    private readonly api: PolicyApi | undefined,
    readonly dir: string,
  ) {
    this.prober = new Prober(lab, dir);
  }

  /**
   * Creates the nine pods and their servers; with `api`, registers the
   * namespaces and pods there and bridges each agent's /metrics to a unix
   * socket in `dir` (polling it then costs no process per poll). Without
   * `api` (an etcd lab, to develop the probes) nothing is registered and
   * settle() returns at once.
   */
  static async create(lab: Lab, opts: { api?: PolicyApi; dir?: string } = {}): Promise<NetpolWorld> {
    const dir = opts.dir ?? join(lab.dir, 'netpol');
    await mkdir(dir, { recursive: true });
    const world = new NetpolWorld(lab, opts.api, dir);
    if (opts.api) {
      for (const node of lab.nodes) {
        const bridge = bridgeAgentMetrics(lab, node, dir);
        world.metricsSockets.push(bridge.socket);
        world.bridgePids.push(bridge.pid);
      }
      for (const ns of NAMESPACES) await world.labelNamespace(ns, nsLabels(ns));
    }
    // One node's pods one after the other (its CNI state), the nodes side by side.
    await Promise.all(lab.nodes.map(async (_, i) => {
      for (const id of POD_IDS.filter((p) => nodeIndexOf(p) === i)) await world.addPod(id, podLabels(id), { senders: false });
    }));
    await world.startSenders(POD_IDS.flatMap((from) => POD_IDS.filter((to) => to !== from).map((to) => [from, to] as [string, string])));
    return world;
  }

  /** The pods that exist now, in layout order. */
  podIds(): string[] {
    return POD_IDS.filter((id) => this.pods.has(id));
  }

  pod(id: string): WorldPod {
    const pod = this.pods.get(id);
    if (!pod) throw new Error(`no pod ${id} now`);
    return pod;
  }

  /** The ids of the pods on the lab node `node` ("n1"). */
  podsOn(node: string): string[] {
    return this.podIds().filter((id) => this.pod(id).node.name === node);
  }

  async labelNamespace(ns: string, labels: Record<string, string>): Promise<void> {
    this.nsLabelsNow.set(ns, labels);
    if (this.api) this.saw(await this.api.upsertNamespace(ns, labels));
  }

  async labelPod(id: string, labels: Record<string, string>): Promise<void> {
    const pod = this.pod(id);
    pod.labels = labels;
    await this.register(pod);
  }

  /** Deletes the pod from the API and from the lab (servers, namespace). */
  async deletePod(id: string): Promise<void> {
    const pod = this.pod(id);
    this.pods.delete(id);
    const [ns, name] = id.split('/') as [string, string];
    if (this.api) this.saw(await this.api.deletePod(ns, name));
    stopGroup(pod.serversPid);
    for (const [pair, pid] of this.senders) {
      if (pair.split('>').includes(id)) {
        stopGroup(pid);
        this.senders.delete(pair);
      }
    }
    await this.lab.removePod(pod.lab);
  }

  /** A new lab pod for `id` on its layout node (a new namespace, usually a new IP), servers started, registered with its usual labels. */
  async addPod(id: string, labels = podLabels(id), opts: { senders?: boolean } = {}): Promise<void> {
    const node = this.lab.nodes[nodeIndexOf(id)]!;
    const lab = await this.lab.addPod(node);
    const pod: WorldPod = { id, ns: lab.ns, ip: lab.ip, lab, node, labels, serversPid: 0 };
    pod.serversPid = startServers(this.lab, pod, this.dir);
    this.pods.set(id, pod);
    for (let i = 0; !(await serversListening(this.lab, pod)); i++) {
      if (i > 100) throw new Error(`the servers in ${id} (${pod.ns}) are not listening after 10 s: see ${this.dir}/${pod.ns}.servers.log`);
      await sleep(100);
    }
    if (opts.senders ?? true) await this.startSenders(this.podIds().filter((o) => o !== id).flatMap((o) => [[id, o], [o, id]] as [string, string][]));
    await this.register(pod);
  }

  /** Starts the SCTP senders of these pod pairs and waits until each listens. */
  private async startSenders(pairs: [from: string, to: string][]): Promise<void> {
    for (const [from, to] of pairs) this.senders.set(`${from}>${to}`, startSctpSender(this.lab, this.dir, this.pod(from), this.pod(to)));
    for (let i = 0; !pairs.every(([from, to]) => existsSync(sctpSenderPath(this.dir, this.pod(from), this.pod(to)))); i++) {
      if (i > 100) throw new Error(`the SCTP senders did not start within 10 s: see ${this.dir}/*.sctp-senders.log`);
      await sleep(100);
    }
  }

  /** Creates or replaces a networking.k8s.io/v1 NetworkPolicy (the object as JSON). */
  async applyPolicy(policy: { metadata: { namespace: string; name: string } }): Promise<void> {
    this.policies.add(`${policy.metadata.namespace}/${policy.metadata.name}`);
    if (!this.api) throw new Error('no API server in this world: policies need kube mode');
    this.saw(await this.api.upsertPolicy(policy));
  }

  async deletePolicy(namespace: string, name: string): Promise<void> {
    this.policies.delete(`${namespace}/${name}`);
    if (this.api) this.saw(await this.api.deletePolicy(namespace, name));
  }

  /** Back to the layout's state: no policies, the usual labels, every pod present. */
  async reset(): Promise<void> {
    for (const ref of [...this.policies]) {
      const [ns, name] = ref.split('/') as [string, string];
      await this.deletePolicy(ns, name);
    }
    for (const ns of NAMESPACES) {
      if (JSON.stringify(this.nsLabelsNow.get(ns)) !== JSON.stringify(nsLabels(ns))) await this.labelNamespace(ns, nsLabels(ns));
    }
    for (const id of POD_IDS) {
      if (!this.pods.has(id)) await this.addPod(id);
      else if (JSON.stringify(this.pod(id).labels) !== JSON.stringify(podLabels(id))) await this.labelPod(id, podLabels(id));
    }
  }

  /**
   * Waits until every agent reports (weft_policy_resource_version) rules at
   * least as new as the last change made here: only then is the change in
   * every node's kernel. Throws naming each agent's figure on timeout.
   */
  async settle(timeoutMs = 30_000): Promise<void> {
    if (!this.api) return;
    const want = this.lastRv;
    const deadline = Date.now() + timeoutMs;
    let seen: (bigint | undefined)[] = [];
    for (;;) {
      seen = await Promise.all(this.metricsSockets.map(async (s) => {
        const rv = (await metricsAt(s)).get('weft_policy_resource_version');
        return rv === undefined ? undefined : BigInt(rv);
      }));
      if (seen.every((rv) => rv !== undefined && rv >= want)) return;
      if (Date.now() > deadline) {
        throw new Error(`agents did not apply resourceVersion ${want} within ${timeoutMs} ms (weft_policy_resource_version: ${this.lab.nodes.map((n, i) => `${n.name}=${seen[i] ?? 'none'}`).join(', ')})`);
      }
      await sleep(100);
    }
  }

  /**
   * Probes every pair of `expected` (first with a short timeout), then
   * re-probes once, with a longer one, only the probes that disagree with
   * it: a loaded machine then costs time, not a false failure.
   */
  async probe(expected: Reachability, timeoutsS: [first: number, again: number] = [0.5, 3]): Promise<MatrixResult> {
    const specs: ProbeSpec[] = expected.probes().map(([port, from, to]) => ({ port, from: this.pod(from), to: this.pod(to) }));
    const observed = await this.prober.run(specs, timeoutsS[0]);
    const wrong = new Set(mismatches(expected, observed).map((line) => line.split(':')[0]));
    const again = specs.filter((s) => wrong.has(`${s.port} ${s.from.id} -> ${s.to.id}`));
    if (again.length > 0) for (const [k, v] of await this.prober.run(again, timeoutsS[1])) observed.set(k, v);
    return { observed, reprobed: again.length };
  }

  /** Stops what create() started outside the pods (the pods go with the lab). */
  close(): void {
    for (const pid of this.bridgePids) stopGroup(pid);
    for (const pod of this.pods.values()) stopGroup(pod.serversPid);
    for (const pid of this.senders.values()) stopGroup(pid);
  }

  private async register(pod: WorldPod): Promise<void> {
    if (!this.api) return;
    const [namespace, name] = pod.id.split('/') as [string, string];
    const ips = [pod.lab.ip, ...(pod.lab.ipv6 ? [pod.lab.ipv6] : [])];
    this.saw(await this.api.upsertPod({ namespace, name, labels: pod.labels, nodeName: pod.node.ns, ips, ports: [...CONTAINER_PORTS] }));
  }

  private saw(rv: string): void {
    const n = BigInt(rv);
    if (n > this.lastRv) this.lastRv = n;
  }
}
