// A weft cluster on one machine: nodes and pods as network namespaces, a real
// etcd, a real agent per node, pods wired by weft's CNI plugin (delegating
// to the standard bridge + host-local).
// Used by `weft lab`, the e2e tests and `weft bench`.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../errors.js';
import { packageRoot } from '../core/package-root.js';
import type { BackendType } from '../config/netconf.js';
import { Cidr } from '../core/cidr.js';
import { parseNodeSubnet, type NodeSubnet } from '../cni/subnet-env.js';
import { writeSubnetEnv } from '../subnet/subnet-env.js';
import { ipBatch, runCommand, type CommandOptions, type CommandResult } from './command.js';
import { labCniBinDir, runCni, weftConf, writeCniLauncher } from './cni.js';
import { EtcdServer } from './etcd.js';
import { pingMatrix, type PingMatrix, type PingOptions } from './ping.js';
import { checkLabPrerequisites, findProgram } from './prereqs.js';
import { commandLine, isAlive, sendSignal, spawnDetached, waitForExit } from '../core/process.js';
import { readLabState, writeLabState, type LabHost, type LabNode, type LabPod, type LabState } from './state.js';
import { destroyAllLabs, destroyLab, labDirPrefix, listNetns } from './teardown.js';
import {
  OUTSIDE_SEGMENT,
  checkLabName,
  hostAddress,
  labNs,
  labNsPrefix,
  nodeAddress,
  nodeSegment,
  nodeShortName,
  podShortName,
  segment,
  underlayNs,
  type Topology,
} from './topology.js';

export type { LabHost, LabNode, LabPod } from './state.js';
export type { PingMatrix, PingRow } from './ping.js';

export const DEFAULT_LAB_NAME = 'demo';
export const DEFAULT_NETWORK = '10.244.0.0/16';
const ETCD_PORT = 2379;
const HEALTHZ = '127.0.0.1:10270';

export interface LabOptions {
  /** Default "demo"; namespaces are named wl-<name>-... */
  name?: string;
  nodes?: number;
  podsPerNode?: number;
  /** Used for the default net-conf when `netConf` is not given. Default host-gw. */
  backend?: BackendType;
  topology?: Topology;
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
}

export type NodeRef = string | LabNode;

export function agentEntry(): string {
  return join(packageRoot(), 'dist', 'src', 'cli', 'main.js');
}

/** The built `weft` CNI plugin, which the lab's launcher runs. */
function cniPluginEntry(): string {
  const entry = join(packageRoot(), 'dist', 'src', 'cni', 'main.js');
  if (!existsSync(entry)) throw new WeftError(`the weft CNI plugin is not built (${entry} is missing)`, 'run "npm run build"');
  return entry;
}

/** The last thing a log says, for a one-line error: pino's `msg` (and `err`) or the raw line. */
function lastLogLine(file: string): string {
  let line: string;
  try {
    line = readFileSync(file, 'utf8').trim().split('\n').pop() ?? '';
  } catch {
    return '(no log)';
  }
  try {
    const rec = JSON.parse(line) as { msg?: string; err?: { message?: string } };
    line = [rec.msg, rec.err?.message].filter(Boolean).join(': ') || line;
  } catch {
    // not JSON: a fatal error printed as text
  }
  return line.slice(0, 300) || '(empty log)';
}

export class Lab {
  private saving: Promise<void> = Promise.resolve();
  private etcdLog = '';

  private constructor(private readonly state: LabState) {}

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
    const dir = await mkdtemp(join(tmpdir(), labDirPrefix(name)));
    const lab = new Lab({
      version: 1,
      name,
      dir,
      topology: opts.topology ?? 'flat',
      netConf: opts.netConf ?? { Network: DEFAULT_NETWORK, Backend: { Type: opts.backend ?? 'host-gw' } },
      etcdPrefix: opts.etcdPrefix ?? '/weft/network',
      startAgents,
      agentArgs: opts.agentArgs ?? [],
      podsPerNode: opts.podsPerNode ?? 2,
      segments: [],
      nodes: [],
      pods: [],
      hosts: [],
      createdAt: new Date().toISOString(),
    });
    await lab.save();
    try {
      await lab.build(nodes, opts.readyTimeoutMs ?? 60_000);
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
    return underlayNs(this.name);
  }
  get etcdEndpoint(): string {
    return `http://${segment(0).gateway}:${ETCD_PORT}`;
  }
  get etcdPrefix(): string {
    return this.state.etcdPrefix;
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

  /** Every ordered pod pair pinged once (retried once); `pods` defaults to all. */
  pingMatrix(opts: PingOptions & { pods?: readonly LabPod[] } = {}): Promise<PingMatrix> {
    return pingMatrix(opts.pods ?? this.pods, opts);
  }

  // --- nodes ---------------------------------------------------------------

  /**
   * Adds a node (namespace wired to the underlay); when the lab runs agents,
   * starts its agent, waits for /readyz and adds the lab's pods-per-node.
   */
  async addNode(opts: { segment?: number; readyTimeoutMs?: number } = {}): Promise<LabNode> {
    const node = await this.createNode(opts.segment);
    if (this.state.startAgents) {
      await this.startAgent(node, { readyTimeoutMs: opts.readyTimeoutMs });
      for (let k = 0; k < this.state.podsPerNode; k++) await this.addPod(node);
    }
    return node;
  }

  /** Starts the node's agent and waits until its /readyz answers; returns the pid and the time to ready. */
  async startAgent(ref: NodeRef, opts: { args?: string[]; readyTimeoutMs?: number } = {}): Promise<{ pid: number; readyMs: number }> {
    const node = this.node(ref);
    if (this.agentRunning(node)) throw new Error(`the agent on ${node.name} is already running (pid ${node.agentPid})`);
    const entry = agentEntry();
    if (!existsSync(entry)) throw new WeftError(`weft is not built (${entry} is missing)`, 'run "npm run build"');
    const dir = this.nodeDir(node);
    await mkdir(join(dir, 'run'), { recursive: true });
    const argv = [
      // Without the test runner's NODE_OPTIONS hooks: the agent runs as it would on a node.
      'ip', 'netns', 'exec', node.ns, 'env', '-u', 'NODE_OPTIONS', process.execPath, entry, 'agent',
      '--etcd-endpoints', this.etcdEndpoint,
      '--etcd-prefix', this.etcdPrefix,
      '--iface', 'eth0',
      '--node-name', node.ns,
      '--subnet-file', this.subnetFile(node),
      '--run-dir', join(dir, 'run'),
      '--healthz-addr', HEALTHZ,
      ...this.state.agentArgs,
      ...(opts.args ?? []),
    ];
    const started = Date.now();
    node.agentPid = spawnDetached(argv, this.agentLogFile(node));
    node.agentReadyMs = undefined;
    await this.save();
    await this.waitReady(node, opts.readyTimeoutMs ?? 60_000);
    node.agentReadyMs = Date.now() - started;
    await this.save();
    return { pid: node.agentPid, readyMs: node.agentReadyMs };
  }

  /** Signals the node's agent and waits for it to exit (SIGKILL after `timeoutMs`). */
  async stopAgent(ref: NodeRef, signal: NodeJS.Signals = 'SIGTERM', opts: { timeoutMs?: number } = {}): Promise<void> {
    const node = this.node(ref);
    const pid = node.agentPid;
    if (pid === undefined) return;
    // A recorded pid may have been reused since the agent died: signal only our own process.
    if (!this.agentRunning(node)) {
      node.agentPid = undefined;
      await this.save();
      return;
    }
    sendSignal(pid, signal);
    if (!(await waitForExit(pid, opts.timeoutMs ?? 15_000))) {
      sendSignal(pid, 'SIGKILL');
      await waitForExit(pid, 5000);
    }
    node.agentPid = undefined;
    await this.save();
  }

  agentRunning(ref: NodeRef): boolean {
    const pid = this.node(ref).agentPid;
    return pid !== undefined && isAlive(pid) && !!commandLine(pid)?.includes(this.dir);
  }

  /** True when the node's agent answers 200 on /readyz. */
  async agentReady(ref: NodeRef): Promise<boolean> {
    return httpOk(this.node(ref).ns, `http://${HEALTHZ}/readyz`);
  }

  /** GET `path` (e.g. /readyz, /metrics) from the node's agent: status and body; status 0 when nothing answers. */
  async agentHttp(ref: NodeRef, path: string): Promise<{ status: number; body: string }> {
    const url = `http://${HEALTHZ}${path}`;
    const script = `fetch(${JSON.stringify(url)}).then(async (r) => process.stdout.write(r.status + '\\n' + await r.text()), () => process.stdout.write('0\\n'))`;
    const r = await runCommand([process.execPath, '-e', script], { netns: this.node(ref).ns, check: false, timeoutMs: 10_000, env: { ...process.env, NODE_OPTIONS: '' } });
    const nl = r.stdout.indexOf('\n');
    return { status: Number(r.stdout.slice(0, nl)) || 0, body: r.stdout.slice(nl + 1) };
  }

  /** The node's subnet.env as written by its agent (or by hand); updates `node.subnet`. */
  async readSubnetEnv(ref: NodeRef): Promise<NodeSubnet> {
    const node = this.node(ref);
    const file = this.subnetFile(node);
    const env = parseNodeSubnet(await readFile(file, 'utf8'), file);
    if (node.subnet !== env.subnet.toString()) {
      node.subnet = env.subnet.toString();
      await this.save();
    }
    return env;
  }

  /** Writes subnet.env by hand (for labs without agents): gateway = first address of `subnet`. */
  async writeSubnetEnv(ref: NodeRef, subnet: string, opts: { mtu?: number; ipMasq?: boolean } = {}): Promise<void> {
    await writeSubnetEnv(this.subnetFile(ref), {
      network: Cidr.parse(String(this.state.netConf.Network ?? DEFAULT_NETWORK)),
      subnet: Cidr.parse(subnet),
      mtu: opts.mtu ?? 1500,
      ipMasq: opts.ipMasq ?? false,
    });
    await this.readSubnetEnv(ref);
  }

  // --- pods and other hosts ------------------------------------------------

  /** Creates a pod namespace on the node and wires it with the weft CNI plugin (bridge + host-local from the node's subnet.env). */
  async addPod(ref: NodeRef): Promise<LabPod> {
    const node = this.node(ref);
    await this.readSubnetEnv(node);
    await writeCniLauncher(labCniBinDir(this.dir), cniPluginEntry());
    const short = podShortName(node.name, Math.max(0, ...this.podsOf(node).map(podOrdinal)) + 1);
    const pod: LabPod = { name: short, ns: labNs(this.name, short), node: node.name, ip: '', cniConfFile: join(this.nodeDir(node), `${short}.cni.json`) };
    const conf = weftConf(this.nodeDir(node));
    await writeFile(pod.cniConfFile, JSON.stringify(conf, null, 2) + '\n');
    this.state.pods.push(pod);
    this.state.pods.sort((a, b) => this.node(a.node).index - this.node(b.node).index || podOrdinal(a) - podOrdinal(b));
    await this.save();
    try {
      await runCommand(['ip', 'netns', 'add', pod.ns]);
      await ipBatch(pod.ns, ['link set lo up']);
      const address = await runCni({ command: 'ADD', nodeNs: node.ns, podNs: pod.ns, conf });
      pod.ip = (address ?? '').split('/')[0] ?? '';
    } catch (err) {
      await this.removePod(pod).catch(() => {});
      throw err;
    }
    await this.save();
    return pod;
  }

  /** CNI DEL, then removes the pod's namespace. */
  async removePod(pod: LabPod): Promise<void> {
    const node = this.node(pod.node);
    if (existsSync(pod.cniConfFile) && existsSync(`/run/netns/${pod.ns}`)) {
      const conf = JSON.parse(await readFile(pod.cniConfFile, 'utf8')) as Record<string, unknown>;
      await runCni({ command: 'DEL', nodeNs: node.ns, podNs: pod.ns, conf }).catch(() => undefined);
    }
    await runCommand(['ip', 'netns', 'del', pod.ns], { check: false });
    this.state.pods = this.state.pods.filter((p) => p !== pod);
    await this.save();
  }

  /**
   * A namespace attached to an underlay segment that is not a node: e.g. an
   * attacker on segment 0, or a host outside the cluster on the "outside"
   * segment (203.0.113.0/24, reached through the underlay router).
   */
  async addUnderlayHost(short: string, opts: { segment?: number } = {}): Promise<LabHost> {
    if (!/^[a-z][a-z0-9]{0,9}$/.test(short) || short === 'ul' || /^n\d+$/.test(short)) {
      throw new Error(`bad underlay host name "${short}" (1-10 lowercase letters/digits, not "ul" or "n<digits>")`);
    }
    const segIndex = opts.segment ?? 0;
    await this.ensureSegment(segIndex);
    const seg = segment(segIndex);
    const ip = hostAddress(seg, this.state.hosts.filter((h) => h.segment === segIndex).length).toString();
    const host: LabHost = { name: short, ns: labNs(this.name, short), segment: segIndex, ip };
    this.state.hosts.push(host);
    await this.save();
    await this.wireToUnderlay(host.ns, `h-${short}`, segIndex, ip, false);
    return host;
  }

  // --- etcd ------------------------------------------------------------------

  async etcdPut(key: string, value: string): Promise<void> {
    await this.etcdctl(['put', key], value);
  }

  async etcdGet(key: string): Promise<string | undefined> {
    return (await this.etcdRead(key, false)).get(key);
  }

  /** Every key under `prefix` with its value. */
  async etcdList(prefix: string): Promise<Map<string, string>> {
    return this.etcdRead(prefix, true);
  }

  /** Deletes `key` (or every key under it with `prefix: true`); returns how many were deleted. */
  async etcdDel(key: string, opts: { prefix?: boolean } = {}): Promise<number> {
    const r = await this.etcdctl(['del', key, ...(opts.prefix ? ['--prefix'] : [])]);
    return Number(r.stdout.trim()) || 0;
  }

  /** Removes the whole lab. */
  down(): Promise<void> {
    return destroyLab(this.name);
  }

  // --- building --------------------------------------------------------------

  private async build(nodeCount: number, readyTimeoutMs: number): Promise<void> {
    const ul = this.underlayNs;
    await runCommand(['ip', 'netns', 'add', ul]);
    await ipBatch(ul, ['link set lo up']);
    await setForwarding(ul);
    await this.ensureSegment(0);
    if (this.topology === 'routed') await this.ensureSegment(1);
    await this.startEtcd();
    await this.etcdPut(`${this.etcdPrefix}/config`, JSON.stringify(this.state.netConf));
    for (let i = 0; i < nodeCount; i++) await this.createNode();
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
      host: segment(0).gateway.toString(),
      clientPort: ETCD_PORT,
      parentDir: this.dir,
      tag: 'etcd-',
      detached: true,
    });
    this.etcdLog = server.logFile;
    this.state.etcdPid = server.pid;
    await this.save();
    // etcd answering its health check is not yet etcd accepting writes through this path.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await this.etcdctl(['endpoint', 'health'], undefined, false);
      if (r.code === 0) return;
      if (Date.now() > deadline) throw new WeftError(`the lab's etcd did not become healthy: ${lastLogLine(this.etcdLog)}`, `see ${this.etcdLog}`);
      await sleep(200);
    }
  }

  private async createNode(segmentIndex?: number): Promise<LabNode> {
    const index = Math.max(0, ...this.nodes.map((n) => n.index)) + 1;
    const segIndex = segmentIndex ?? nodeSegment(this.topology, index);
    await this.ensureSegment(segIndex);
    const name = nodeShortName(index);
    const node: LabNode = { name, ns: labNs(this.name, name), index, segment: segIndex, underlayIP: nodeAddress(segment(segIndex), index).toString() };
    this.state.nodes.push(node);
    await this.save();
    await mkdir(this.nodeDir(node), { recursive: true });
    await this.wireToUnderlay(node.ns, name, segIndex, node.underlayIP, true);
    return node;
  }

  /** A new namespace with `eth0` on the segment's bridge, the segment gateway as default route. */
  private async wireToUnderlay(ns: string, ulIfName: string, segIndex: number, ip: string, forward: boolean): Promise<void> {
    const seg = segment(segIndex);
    await runCommand(['ip', 'netns', 'add', ns]);
    await runCommand(['ip', 'link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', ulIfName, 'netns', this.underlayNs]);
    await ipBatch(this.underlayNs, [`link set ${ulIfName} master ${seg.bridge} up`]);
    await ipBatch(ns, [
      'link set lo up',
      'link set eth0 up',
      `addr add ${ip}/${seg.cidr.prefixLen} dev eth0`,
      `route add default via ${seg.gateway} dev eth0`,
    ]);
    if (forward) await setForwarding(ns);
  }

  private async ensureSegment(index: number): Promise<void> {
    if (this.state.segments.includes(index)) return;
    if (index < 0 || index > OUTSIDE_SEGMENT) throw new Error(`no underlay segment ${index} (0..${OUTSIDE_SEGMENT})`);
    const seg = segment(index);
    await ipBatch(this.underlayNs, [
      `link add ${seg.bridge} type bridge`,
      `link set ${seg.bridge} up`,
      `addr add ${seg.gateway}/${seg.cidr.prefixLen} dev ${seg.bridge}`,
    ]);
    this.state.segments.push(index);
    await this.save();
  }

  private async waitReady(node: LabNode, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const log = this.agentLogFile(node);
    for (;;) {
      const pid = node.agentPid;
      if (pid === undefined || !isAlive(pid)) {
        throw new WeftError(`the agent on ${node.ns} exited: ${lastLogLine(log)}`, `see ${log}`);
      }
      if (existsSync(this.subnetFile(node)) && (await this.agentReady(node))) break;
      if (Date.now() > deadline) {
        throw new WeftError(`the agent on ${node.ns} was not ready after ${Math.round(timeoutMs / 1000)} s: ${lastLogLine(log)}`, `see ${log}`);
      }
      await sleep(100);
    }
    await this.readSubnetEnv(node);
  }

  private etcdctl(args: string[], input?: string, check = true): Promise<CommandResult> {
    return runCommand(['etcdctl', `--endpoints=${this.etcdEndpoint}`, '--dial-timeout=3s', '--command-timeout=10s', ...args], {
      netns: this.underlayNs,
      input,
      check,
    });
  }

  private async etcdRead(key: string, prefix: boolean): Promise<Map<string, string>> {
    const r = await this.etcdctl(['get', key, ...(prefix ? ['--prefix'] : []), '-w', 'json']);
    const parsed = JSON.parse(r.stdout) as { kvs?: Array<{ key: string; value?: string }> };
    const b64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('utf8');
    return new Map((parsed.kvs ?? []).map((kv) => [b64(kv.key), b64(kv.value)]));
  }

  private save(): Promise<void> {
    this.saving = this.saving.catch(() => {}).then(() => writeLabState(this.state));
    return this.saving;
  }
}

function podOrdinal(pod: LabPod): number {
  return Number(/-p(\d+)$/.exec(pod.name)?.[1] ?? 0);
}

async function setForwarding(ns: string): Promise<void> {
  // /proc/sys/net is per network namespace; sh rather than sysctl, which minimal systems lack.
  await runCommand(['sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward'], { netns: ns });
}

/** GET inside a namespace (the lab process itself lives in the root namespace). */
async function httpOk(ns: string, url: string): Promise<boolean> {
  const argv = findProgram('curl')
    ? ['curl', '-fsS', '-o', '/dev/null', '-m', '2', url]
    : [process.execPath, '-e', `fetch(${JSON.stringify(url)}).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))`];
  const r = await runCommand(argv, { netns: ns, check: false, timeoutMs: 5000 });
  return r.code === 0;
}
