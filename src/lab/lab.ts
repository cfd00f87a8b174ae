// A weft cluster on one machine (used by `weft lab`, the e2e tests and `weft
// bench`): the Lab brings one up and down and is the handle to its nodes,
// pods, agents and etcd. The pieces are built by underlay.ts (namespaces),
// etcd.ts, agents.ts (one agent per node) and cni.ts (pods).
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { WeftError } from '../errors.js';
import type { BackendType } from '../config/netconf.js';
import { Cidr, type Family } from '../core/cidr.js';
import { SerialQueue } from '../core/serial-queue.js';
import { parseNodeSubnet, type NodeSubnet } from '../cni/subnet-env.js';
import { writeSubnetEnv } from '../subnet/subnet-env.js';
import { agentEntry, agentHttp, agentReady, launchAgent, waitAgentReady } from './agents.js';
import { runCommand, type CommandOptions, type CommandResult } from './command.js';
import { labIpamDir, runCniGc, unwirePod, weftConf, wirePod, writeCniLaunchers, writePodConf } from './cni.js';
import type { Freed } from '../ipam/state.js';
import { readState, storePaths } from '../ipam/store.js';
import { EtcdCluster, EtcdServer, Etcdctl, cleanEnv, etcdMemberStatus, httpUrl, leaderAmong, type EtcdTls } from './etcd.js';
import { labPkiFiles, makeLabPki, type LabPki } from './pki.js';
import { pingMatrices, pingMatrix, type PingMatrix, type PingOptions } from './ping.js';
import { checkLabPrerequisites } from './prereqs.js';
import { spawnDetached, terminate, waitForExit } from '../core/process.js';
import { isLabProcess, labFamilies, readLabState, writeLabState, type LabEtcdMember, type LabHost, type LabNode, type LabPod, type LabState } from './state.js';
import { destroyAllLabs, destroyLab, labDirPrefix, listNetns } from './teardown.js';
import { checkLabName, labNs, labNsPrefix, podOrdinal, podShortName, segment, type Topology } from './topology.js';
import { Underlay } from './underlay.js';

export { agentEntry } from './agents.js';
export type { LabEtcdMember, LabHost, LabNode, LabPod } from './state.js';
export type { LabPki } from './pki.js';
export type { PingMatrix, PingRow } from './ping.js';

export const DEFAULT_LAB_NAME = 'demo';
export const DEFAULT_NETWORK = '10.244.0.0/16';
/** A lab's IPv6 pod network: a /64 per node. */
export const DEFAULT_IPV6_NETWORK = '2001:db8:1000::/56';
const IPV6_SUBNET_LEN = 64;
const ETCD_PORT = 2379;

/**
 * The net-conf a lab writes when given none: backend `backend` (with
 * `backendOptions`) on the lab's pod networks in `families`. flannel's keys:
 * EnableIPv6 and IPv6Network for IPv6, EnableIPv4 false for IPv6 only.
 */
export function labNetConf(backend: BackendType, families: readonly Family[] = [4], backendOptions: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    ...(families.includes(4) ? { Network: DEFAULT_NETWORK } : { EnableIPv4: false }),
    ...(families.includes(6) ? { EnableIPv6: true, IPv6Network: DEFAULT_IPV6_NETWORK, IPv6SubnetLen: IPV6_SUBNET_LEN } : {}),
    Backend: { Type: backend, ...backendOptions },
  };
}

export interface LabOptions {
  /** Default "demo"; namespaces are named wl-<name>-... */
  name?: string;
  nodes?: number;
  podsPerNode?: number;
  /** Used for the default net-conf when `netConf` is not given. Default host-gw. */
  backend?: BackendType;
  topology?: Topology;
  /**
   * The underlay's address families (IPv4 first; default [4]). The default
   * net-conf follows them: dual-stack pods when 6 is among them.
   */
  families?: Family[];
  /** A full net-conf.json object, written to <prefix>/config as is. */
  netConf?: Record<string, unknown>;
  etcdPrefix?: string;
  /** Extra flags for every agent, e.g. ["--ip-masq"]. */
  agentArgs?: string[];
  /**
   * Default true. When false no agent runs and no pod is created: the caller
   * writes each node's subnet.env (writeSubnetEnv) and adds pods (addPod).
   */
  startAgents?: boolean;
  /** How long to wait for each agent's /readyz. Default 60 s. */
  readyTimeoutMs?: number;
  /** Leave a half-built lab in place (for its logs) instead of removing it. */
  keepOnFailure?: boolean;
  /**
   * etcd serves clients over TLS and requires client certificates (made at
   * run time in <dir>/pki); agents get --etcd-cafile/--etcd-certfile/--etcd-keyfile.
   */
  etcdTls?: boolean;
  /** etcd members: 1 (default), 3 or 5. */
  etcdMembers?: number;
}

/** A lab's etcd member as tests see it. */
export interface LabEtcdMemberView {
  name: string;
  ns: string;
  endpoint: string;
  running: boolean;
}

export const ETCD_MEMBER_COUNTS = [1, 3, 5] as const;

export type NodeRef = string | LabNode;

export class Lab {
  private readonly saving = new SerialQueue();
  private readonly underlay: Underlay;

  private constructor(private readonly state: LabState) {
    this.underlay = new Underlay(state, () => this.save());
  }

  /** Builds a lab. On failure everything built so far is removed (unless keepOnFailure). */
  static async up(opts: LabOptions = {}): Promise<Lab> {
    const name = checkLabName(opts.name ?? DEFAULT_LAB_NAME);
    const startAgents = opts.startAgents ?? true;
    checkLabPrerequisites({ agentEntry: startAgents ? agentEntry() : undefined });
    const leftover = (await listNetns()).some((ns) => ns.startsWith(labNsPrefix(name)));
    if (leftover || (await readLabState(name))) {
      throw new WeftError(`lab "${name}" is already up (or left over from a crash)`, `run "weft lab down --name ${name}" first`);
    }
    const nodes = opts.nodes ?? 3;
    if (!Number.isInteger(nodes) || nodes < 1 || nodes > 80) throw new WeftError(`--nodes ${nodes} is out of range`, 'use 1 to 80');
    const etcdMembers = opts.etcdMembers ?? 1;
    if (!(ETCD_MEMBER_COUNTS as readonly number[]).includes(etcdMembers)) {
      throw new WeftError(`--etcd-members ${etcdMembers} is not 1, 3 or 5`, 'use 1, 3 or 5 (an odd count keeps a majority when one member is lost)');
    }
    const families = labFamilies(opts);
    const dir = await mkdtemp(join(tmpdir(), labDirPrefix(name)));
    const lab = new Lab({
      version: 1,
      name,
      dir,
      topology: opts.topology ?? 'flat',
      families,
      netConf: opts.netConf ?? labNetConf(opts.backend ?? 'host-gw', families),
      etcdPrefix: opts.etcdPrefix ?? '/weft/network',
      startAgents,
      agentArgs: opts.agentArgs ?? [],
      podsPerNode: opts.podsPerNode ?? 2,
      segments: [],
      nodes: [],
      pods: [],
      hosts: [],
      createdAt: new Date().toISOString(),
      ...(opts.etcdTls ? { etcdTls: true } : {}),
    });
    await lab.save();
    try {
      await lab.build(nodes, etcdMembers, opts.readyTimeoutMs ?? 60_000);
    } catch (err) {
      if (!opts.keepOnFailure) await destroyLab(name).catch(() => {});
      throw err;
    }
    return lab;
  }

  /** The lab `name` that an earlier process brought up. */
  static async attach(name: string = DEFAULT_LAB_NAME): Promise<Lab> {
    const state = await readLabState(checkLabName(name));
    if (!state) throw new WeftError(`no lab "${name}" is up`, `start one with "weft lab up --name ${name}"`);
    return new Lab(state);
  }

  /** Removes lab `name` completely, from its state file and from what is found on the machine. */
  static destroy(name: string): Promise<void> {
    return destroyLab(checkLabName(name));
  }

  /** Removes every lab (every wl-* namespace and lab temp dir); returns the lab names found. */
  static destroyAll(): Promise<string[]> {
    return destroyAllLabs();
  }

  get name(): string {
    return this.state.name;
  }
  /** The lab's temp dir (etcd data, per-node subnet.env and agent.log, CNI state). */
  get dir(): string {
    return this.state.dir;
  }
  get topology(): Topology {
    return this.state.topology;
  }
  /** The address families of the underlay and the pods, IPv4 first. */
  get families(): Family[] {
    return labFamilies(this.state);
  }
  get netConf(): Readonly<Record<string, unknown>> {
    return this.state.netConf;
  }
  get nodes(): readonly LabNode[] {
    return this.state.nodes;
  }
  get pods(): readonly LabPod[] {
    return this.state.pods;
  }
  get hosts(): readonly LabHost[] {
    return this.state.hosts;
  }
  get underlayNs(): string {
    return this.underlay.ns;
  }
  /** The first etcd member's client URL. */
  get etcdEndpoint(): string {
    return this.etcdEndpoints[0]!;
  }
  /**
   * Every member's client URL. A plain single etcd listens on segment 0's
   * gateway in the underlay namespace; the members of a TLS or multi-member
   * etcd each in a namespace of their own on segment 0 (e1, e2, ...).
   */
  get etcdEndpoints(): string[] {
    return this.state.etcdMembers?.map((m) => m.endpoint) ?? [httpUrl(this.etcdHost, ETCD_PORT)];
  }
  private get etcdHost(): string {
    return segment(0, this.families[0]).gateway.toString();
  }
  get etcdPrefix(): string {
    return this.state.etcdPrefix;
  }
  /** The TLS files (good ones, and the bad variants for tests) of a TLS lab. */
  get etcdTlsFiles(): LabPki | undefined {
    return this.state.etcdTls ? labPkiFiles(join(this.dir, 'pki')) : undefined;
  }
  private get etcdTls(): EtcdTls | undefined {
    const pki = this.etcdTlsFiles;
    return pki && { caFile: pki.caFile, certFile: pki.serverCertFile, keyFile: pki.serverKeyFile, clientCertAuth: true, clientCertFile: pki.clientCertFile, clientKeyFile: pki.clientKeyFile };
  }
  /** The agent flags that reach the lab's etcd: every endpoint and, in a TLS lab, the client's files. */
  get etcdAgentArgs(): string[] {
    const pki = this.etcdTlsFiles;
    return ['--etcd-endpoints', this.etcdEndpoints.join(','), ...(pki ? ['--etcd-cafile', pki.caFile, '--etcd-certfile', pki.clientCertFile, '--etcd-keyfile', pki.clientKeyFile] : [])];
  }
  private get etcd(): Etcdctl {
    return new Etcdctl(this.etcdEndpoints.join(','), this.underlayNs, this.etcdTls);
  }

  /** The etcd members, and whether each runs. */
  get etcdMembers(): LabEtcdMemberView[] {
    return this.members().map((m) => ({ name: m.name, ns: m.ns, endpoint: m.endpoint, running: isLabProcess(m.pid, this.dir) }));
  }

  /** The member that leads now (by its own word), or undefined while none does. */
  etcdLeader(): Promise<LabEtcdMemberView | undefined> {
    return leaderAmong(this.etcdMembers.filter((m) => m.running), (m) => etcdMemberStatus(m.endpoint, { netns: this.underlayNs, tls: this.etcdTls }));
  }

  /** SIGKILLs an etcd member (as a crash would) and waits until it is gone. */
  async killEtcdMember(name: string): Promise<void> {
    const m = this.member(name);
    if (isLabProcess(m.pid, this.dir)) {
      process.kill(m.pid, 'SIGKILL');
      await waitForExit(m.pid, 10_000);
    }
    m.pid = undefined;
    await this.save();
  }

  /** Starts a stopped etcd member again with its data and waits until it answers its health check. */
  async restartEtcdMember(name: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    const m = this.member(name);
    if (isLabProcess(m.pid, this.dir)) throw new Error(`etcd member ${name} is already running (pid ${m.pid})`);
    m.pid = spawnDetached(m.argv, m.logFile, cleanEnv());
    if (m === this.members()[0]) this.state.etcdPid = m.pid;
    await this.save();
    await new Etcdctl(m.endpoint, this.underlayNs, this.etcdTls).waitHealthy(m.logFile, opts.timeoutMs ?? 60_000);
  }

  private members(): LabEtcdMember[] {
    return this.state.etcdMembers ?? [];
  }

  private member(name: string): LabEtcdMember {
    const m = this.members().find((x) => x.name === name || x.ns === name);
    if (!m) throw new Error(`lab ${this.name} has no etcd member ${name}`);
    return m;
  }

  node(ref: NodeRef): LabNode {
    const name = typeof ref === 'string' ? ref : ref.name;
    const node = this.state.nodes.find((n) => n.name === name || n.ns === name);
    if (!node) throw new Error(`lab ${this.name} has no node ${name}`);
    return node;
  }

  pod(name: string): LabPod {
    const pod = this.state.pods.find((p) => p.name === name || p.ns === name);
    if (!pod) throw new Error(`lab ${this.name} has no pod ${name}`);
    return pod;
  }

  podsOf(ref: NodeRef): LabPod[] {
    const node = this.node(ref);
    return this.state.pods.filter((p) => p.node === node.name);
  }

  nodeDir(ref: NodeRef): string {
    return join(this.dir, this.node(ref).name);
  }
  subnetFile(ref: NodeRef): string {
    return join(this.nodeDir(ref), 'subnet.env');
  }
  agentLogFile(ref: NodeRef): string {
    return join(this.nodeDir(ref), 'agent.log');
  }

  /** The namespace for "n1", "n1-p2", "ul", a full "wl-..." name, or a node/pod/host object. */
  nsOf(target: string | { ns: string }): string {
    if (typeof target !== 'string') return target.ns;
    return target.startsWith('wl-') ? target : labNs(this.name, target);
  }

  /** Runs argv inside a lab namespace; throws on a non-zero exit unless `check: false`. */
  exec(target: string | { ns: string }, argv: readonly string[], opts: Omit<CommandOptions, 'netns'> = {}): Promise<CommandResult> {
    return runCommand(argv, { ...opts, netns: this.nsOf(target) });
  }

  /**
   * Starts a long-running process inside a lab namespace (a ping flow, a
   * capture, a server), detached, output appended to `logFile` (default
   * <dir>/<ns>.<program>.log). Returns its pid; `down` kills it with the namespace.
   */
  spawn(target: string | { ns: string }, argv: readonly string[], opts: { logFile?: string } = {}): { pid: number; logFile: string } {
    const ns = this.nsOf(target);
    const logFile = opts.logFile ?? join(this.dir, `${ns}.${basename(argv[0] ?? 'process')}.log`);
    return { pid: spawnDetached(['ip', 'netns', 'exec', ns, ...argv], logFile), logFile };
  }

  /** Every ordered pod pair pinged once (retried once) in `family` (default the lab's first); `pods` defaults to all. */
  pingMatrix(opts: PingOptions & { pods?: readonly LabPod[]; family?: Family } = {}): Promise<PingMatrix> {
    return pingMatrix(opts.pods ?? this.pods, { ...opts, family: opts.family ?? this.families[0] });
  }

  /** pingMatrix in every family the lab runs, all probes in one bounded pool: one matrix per family. */
  pingMatrices(opts: PingOptions & { pods?: readonly LabPod[] } = {}): Promise<PingMatrix[]> {
    return pingMatrices(opts.pods ?? this.pods, this.families, opts);
  }

  // --- nodes ---------------------------------------------------------------

  /**
   * Adds a node (namespace wired to the underlay); when the lab runs agents,
   * starts its agent, waits for /readyz and adds the lab's pods-per-node.
   */
  async addNode(opts: { segment?: number; readyTimeoutMs?: number; agent?: boolean } = {}): Promise<LabNode> {
    const node = await this.underlay.addNode(opts.segment);
    if (opts.agent ?? this.state.startAgents) {
      await this.startAgent(node, { readyTimeoutMs: opts.readyTimeoutMs });
      for (let k = 0; k < this.state.podsPerNode; k++) await this.addPod(node);
    }
    return node;
  }

  /**
   * Starts the node's agent and waits until its /readyz answers; returns the
   * pid and the time to ready (`wait: false`: returns at once, readyMs -1).
   * `args` come last: a repeated flag (e.g. --etcd-cafile) overrides the
   * lab's; `etcdArgs` replaces the lab's etcd flags (etcdAgentArgs) outright.
   */
  async startAgent(ref: NodeRef, opts: { args?: string[]; etcdArgs?: string[]; readyTimeoutMs?: number; wait?: boolean } = {}): Promise<{ pid: number; readyMs: number }> {
    const node = this.node(ref);
    if (this.agentRunning(node)) throw new Error(`the agent on ${node.name} is already running (pid ${node.agentPid})`);
    const files = { subnetFile: this.subnetFile(node), logFile: this.agentLogFile(node) };
    const { pid, startedAt } = await launchAgent({
      ns: node.ns,
      etcdArgs: opts.etcdArgs ?? this.etcdAgentArgs,
      etcdPrefix: this.etcdPrefix,
      nodeDir: this.nodeDir(node),
      ...files,
      args: [...this.state.agentArgs, ...(opts.args ?? [])],
    });
    node.agentPid = pid;
    node.agentReadyMs = undefined;
    await this.save();
    if (opts.wait === false) return { pid, readyMs: -1 };
    await waitAgentReady(node, files, opts.readyTimeoutMs ?? 60_000);
    await this.readSubnetEnv(node);
    if (!node.ipv6Subnet && this.families.includes(6) && this.state.netConf.EnableIPv6 === true) {
      // Else the lab would come up dual-stack on paper and give its pods IPv4 only.
      throw new WeftError(`the agent on ${node.ns} is ready without an IPv6 subnet although the net-conf enables IPv6 (no FLANNEL_IPV6_SUBNET in ${files.subnetFile})`, `its lease has no IPv6 half: see ${files.logFile}`);
    }
    node.agentReadyMs = Date.now() - startedAt;
    await this.save();
    return { pid: node.agentPid, readyMs: node.agentReadyMs };
  }

  /** Signals the node's agent and waits for it to exit (SIGKILL after `timeoutMs`). */
  async stopAgent(ref: NodeRef, signal: NodeJS.Signals = 'SIGTERM', opts: { timeoutMs?: number } = {}): Promise<void> {
    const node = this.node(ref);
    const pid = node.agentPid;
    if (pid === undefined) return;
    // A recorded pid may have been reused since the agent died: signal only our own process.
    if (this.agentRunning(node)) await terminate([pid], opts.timeoutMs ?? 15_000, signal);
    node.agentPid = undefined;
    await this.save();
  }

  agentRunning(ref: NodeRef): boolean {
    return isLabProcess(this.node(ref).agentPid, this.dir);
  }

  /** True when the node's agent answers 200 on /readyz. */
  async agentReady(ref: NodeRef): Promise<boolean> {
    return agentReady(this.node(ref).ns);
  }

  /** GET `path` (e.g. /readyz, /metrics) from the node's agent: status and body; status 0 when nothing answers. */
  async agentHttp(ref: NodeRef, path: string): Promise<{ status: number; body: string }> {
    return agentHttp(this.node(ref).ns, path);
  }

  /** The node's subnet.env as written by its agent (or by hand); updates `node.subnet` and `node.ipv6Subnet`. */
  async readSubnetEnv(ref: NodeRef): Promise<NodeSubnet> {
    const node = this.node(ref);
    const file = this.subnetFile(node);
    const env = parseNodeSubnet(await readFile(file, 'utf8'), file);
    // An IPv6-only node's primary subnet is its IPv6 one.
    const subnet = env.subnet.toString();
    const ipv6Subnet = (env.ipv6?.subnet ?? (env.subnet.family === 6 ? env.subnet : undefined))?.toString();
    if (node.subnet !== subnet || node.ipv6Subnet !== ipv6Subnet) {
      node.subnet = subnet;
      if (ipv6Subnet) node.ipv6Subnet = ipv6Subnet;
      else delete node.ipv6Subnet;
      await this.save();
    }
    return env;
  }

  /**
   * Writes subnet.env by hand (for labs without agents): gateway = first
   * address of `subnet` (IPv6 on an IPv6-only node); `ipv6Subnet` makes the
   * node dual-stack. Networks: the net-conf's, else the lab's defaults.
   */
  async writeSubnetEnv(ref: NodeRef, subnet: string, opts: { mtu?: number; ipMasq?: boolean; ipv6Subnet?: string } = {}): Promise<void> {
    const conf = this.state.netConf;
    const part = (text: string): { network: Cidr; subnet: Cidr } => {
      const cidr = Cidr.parse(text);
      const network = cidr.family === 6 ? (conf.IPv6Network ?? DEFAULT_IPV6_NETWORK) : (conf.Network ?? DEFAULT_NETWORK);
      return { network: Cidr.parse(String(network)), subnet: cidr };
    };
    await writeSubnetEnv(this.subnetFile(ref), {
      ...part(subnet),
      ...(opts.ipv6Subnet ? { ipv6: part(opts.ipv6Subnet) } : {}),
      mtu: opts.mtu ?? 1500,
      ipMasq: opts.ipMasq ?? false,
    });
    await this.readSubnetEnv(ref);
  }

  // --- pods and other hosts ------------------------------------------------

  /** Creates a pod namespace on the node and wires it with the weft CNI plugin (bridge + weft-ipam from the node's subnet.env). */
  async addPod(ref: NodeRef): Promise<LabPod> {
    const node = this.node(ref);
    await this.readSubnetEnv(node);
    const short = podShortName(node.name, Math.max(0, ...this.podsOf(node).map((p) => podOrdinal(p.name))) + 1);
    const pod: LabPod = { name: short, ns: labNs(this.name, short), node: node.name, ip: '', cniConfFile: join(this.nodeDir(node), `${short}.cni.json`) };
    const conf = await writePodConf(this.dir, this.nodeDir(node), pod.cniConfFile);
    this.state.pods.push(pod);
    this.state.pods.sort((a, b) => this.node(a.node).index - this.node(b.node).index || podOrdinal(a.name) - podOrdinal(b.name));
    await this.save();
    try {
      const ips = await wirePod(node.ns, pod.ns, conf);
      pod.ip = String(ips.find((ip) => ip.family === this.families[0]) ?? ips[0] ?? '');
      const ipv6 = ips.find((ip) => ip.family === 6);
      if (ipv6) pod.ipv6 = ipv6.toString();
    } catch (err) {
      await this.removePod(pod).catch(() => {});
      throw err;
    }
    await this.save();
    return pod;
  }

  /** CNI DEL, then removes the pod's namespace. */
  async removePod(pod: LabPod): Promise<void> {
    await unwirePod(this.node(pod.node).ns, pod);
    this.state.pods = this.state.pods.filter((p) => p !== pod);
    await this.save();
  }

  /**
   * The lab as the CNI runtime calling GC (CNI 1.1) on each node (or `nodes`):
   * its pods there are the valid attachments, so every other address the
   * node's weft-ipam holds is freed. Returns, per node, what the GC freed.
   */
  async cniGc(nodes: readonly NodeRef[] = this.nodes): Promise<Array<{ node: string; valid: number; freed: Freed[] }>> {
    const out: Array<{ node: string; valid: number; freed: Freed[] }> = [];
    for (const ref of nodes) {
      const node = this.node(ref);
      const valid = this.podsOf(node).map((p) => ({ containerID: p.ns, ifname: 'eth0' }));
      const conf = weftConf(this.nodeDir(node));
      await writeCniLaunchers(this.dir);
      await runCniGc(node.ns, conf, valid);
      const state = readState(storePaths(labIpamDir(this.nodeDir(node)), String(conf.name)).state);
      out.push({ node: node.name, valid: valid.length, freed: state.lastReconcile?.freed ?? [] });
    }
    return out;
  }

  /**
   * A namespace attached to an underlay segment that is not a node: e.g. an
   * attacker on segment 0, or a host outside the cluster on the "outside"
   * segment (203.0.113.0/24, reached through the underlay router).
   */
  addUnderlayHost(short: string, opts: { segment?: number } = {}): Promise<LabHost> {
    return this.underlay.addHost(short, opts.segment ?? 0);
  }

  // --- etcd ------------------------------------------------------------------

  etcdPut(key: string, value: string, opts: { keepLease?: boolean } = {}): Promise<void> {
    return this.etcd.put(key, value, opts);
  }

  etcdGet(key: string): Promise<string | undefined> {
    return this.etcd.get(key);
  }

  /** Every key under `prefix` with its value. */
  etcdList(prefix: string): Promise<Map<string, string>> {
    return this.etcd.list(prefix);
  }

  /** Deletes `key` (or every key under it with `prefix: true`); returns how many were deleted. */
  etcdDel(key: string, opts: { prefix?: boolean } = {}): Promise<number> {
    return this.etcd.del(key, opts);
  }

  /** Removes the whole lab. */
  down(): Promise<void> {
    return destroyLab(this.name);
  }

  // --- building --------------------------------------------------------------

  private async build(nodeCount: number, etcdMembers: number, readyTimeoutMs: number): Promise<void> {
    await this.underlay.create();
    if (etcdMembers === 1 && !this.state.etcdTls) await this.startEtcd();
    else await this.startEtcdCluster(etcdMembers);
    await this.etcdPut(`${this.etcdPrefix}/config`, JSON.stringify(this.state.netConf));
    for (let i = 0; i < nodeCount; i++) await this.underlay.addNode();
    if (!this.state.startAgents) return;
    await Promise.all(this.nodes.map((n) => this.startAgent(n, { readyTimeoutMs })));
    await Promise.all(
      this.nodes.map(async (n) => {
        for (let k = 0; k < this.state.podsPerNode; k++) await this.addPod(n);
      }),
    );
  }

  private async startEtcd(): Promise<void> {
    // Its data dir lies inside the lab dir: teardown recognises the pid by that path.
    const server = await EtcdServer.start({
      netns: this.underlayNs,
      host: this.etcdHost,
      clientPort: ETCD_PORT,
      parentDir: this.dir,
      tag: 'etcd-',
      detached: true,
    });
    this.state.etcdPid = server.pid;
    this.state.etcdMembers = [{ name: 'etcd', ns: this.underlayNs, endpoint: server.endpoint, pid: server.pid, logFile: server.logFile, argv: server.commandLine }];
    await this.save();
    await this.etcd.waitHealthy(server.logFile);
  }

  /**
   * `count` members, each in a namespace of its own on segment 0 (e1, e2,
   * ...); with TLS, the lab's PKI first (the server certificate names every
   * member's address). Peer traffic between members stays plaintext.
   */
  private async startEtcdCluster(count: number): Promise<void> {
    const hosts: LabHost[] = [];
    for (let i = 1; i <= count; i++) hosts.push(await this.underlay.addHost(`e${i}`, 0));
    if (this.state.etcdTls) await makeLabPki(join(this.dir, 'pki'), hosts.flatMap((h) => [h.ip, ...(h.ipv6 ? [h.ipv6] : [])]));
    // Their data dirs lie inside the lab dir: teardown recognises the pids by that path.
    const cluster = await EtcdCluster.start(
      hosts.map((h) => ({ netns: h.ns, host: h.ip })),
      { parentDir: this.dir, tag: 'etcd-', detached: true, namePrefix: 'e', ...(this.etcdTls ? { tls: this.etcdTls } : {}) },
    );
    this.state.etcdMembers = cluster.members.map((s, i) => ({ name: s.name, ns: hosts[i]!.ns, endpoint: s.endpoint, pid: s.pid, logFile: s.logFile, argv: s.commandLine }));
    this.state.etcdPid = cluster.members[0]!.pid;
    await this.save();
    await this.etcd.waitHealthy(cluster.members[0]!.logFile);
  }

  /** Writes the state file; writes never overlap and keep their order. */
  private save(): Promise<void> {
    return this.saving.run(() => writeLabState(this.state));
  }
}
