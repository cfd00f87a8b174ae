// A udp tunnel between network namespaces, without the agent: node
// namespaces on one bridge, a pod namespace behind each node, and the udp
// backend (or the bare loop) running in a child process per node. Used by
// the e2e tests and to measure the loop against a hand-built kernel VXLAN.
// Each node's child runs udp-testbed-node.ts; the fuzzer runs udp-testbed-fuzzer.ts.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { listNetns, removeNamespaces } from '../../src/lab/teardown.js';
import type { UdpCounters } from '../../backends/udp/native.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');
/** The child scripts, real TypeScript run through the same loader. */
const NODE_CHILD = join(HERE, 'udp-testbed-node.ts');
const FUZZ_CHILD = join(HERE, 'udp-testbed-fuzzer.ts');
/** TypeScript loader for children running the backend from source. */
const TS_IMPORT = join(ROOT, 'node_modules', '@tapjs', 'typescript', 'dist', 'esm', 'import.mjs');

export interface TestbedNode {
  index: number;
  /** Node namespace, e.g. "wud-n1". */
  ns: string;
  /** Pod namespace behind the node, e.g. "wud-p1". */
  podNs: string;
  /** Underlay device in the node namespace. */
  dev: string;
  underlay: string;
  subnet: string;
  /** The pod's address; the node side of its link is .1. */
  pod: string;
  /** The IPv6 side (configured only with TestbedOptions.ipv6): underlay, subnet, pod, the node side of its link ::1. */
  underlay6: string;
  subnet6: string;
  pod6: string;
  /** The backend's run dir: its loop process listens on a socket there. */
  runDir: string;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command, never throwing on a non-zero exit. */
export function run(cmd: string, args: readonly string[], timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function must(cmd: string, args: readonly string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return r.stdout;
}

/** Runs `cmd` inside namespace `ns`. */
export function inNs(ns: string, cmd: string, args: readonly string[], timeoutMs?: number): Promise<RunResult> {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], timeoutMs);
}

/** Where the nodes of testbed `prefix` keep their run dirs. */
function runDirs(prefix: string): string {
  return join(tmpdir(), `weft-testbed-${prefix}`);
}

/** Removes every namespace whose name starts with `${prefix}-`, with the processes in it (udp loop processes), and the run dirs. */
export async function removeLeftovers(prefix: string): Promise<void> {
  await removeNamespaces((await listNetns()).filter((ns) => ns.startsWith(`${prefix}-`)));
  await rm(runDirs(prefix), { recursive: true, force: true });
}

export interface NodeConfig {
  /** "backend": createUdpBackend with Backend keys; "loop": the bare addon with loop options. */
  kind: 'backend' | 'loop';
  /** The families the node runs (the testbed needs `ipv6` for the last two): IPv4 (default), both, or IPv6 only. */
  stack?: 'ipv4' | 'dual' | 'ipv6';
  backend?: Record<string, unknown>;
  loop?: { mode?: 'fast' | 'simple'; queues?: number; offload?: Record<string, boolean>; verifyInnerChecksums?: boolean; mtu?: number };
  /** Host routes this node's own lease borrows (kind "backend"), as the agent would hold them. */
  borrowedIPs?: string[];
}

export interface PeerSpec {
  subnet: string;
  publicIP: string;
  /** The lease's IPv6 half, on a testbed with IPv6. */
  ipv6Subnet?: string;
  publicIPv6?: string;
  backendType?: string;
  /** The lease's borrowed addresses (host routes of pinned pods away from their subnet). */
  borrowedIPs?: string[];
}

/** A node's loop in its child process, driven by JSON lines on stdin. */
export class NodeProcess {
  private readonly waiting: ((v: unknown) => void)[] = [];
  private readonly early: unknown[] = [];
  readonly exited: Promise<number>;

  constructor(readonly node: TestbedNode, private readonly child: ChildProcess, private readonly stderr: string[]) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        return;
      }
      const w = this.waiting.shift();
      if (w) w(msg);
      else this.early.push(msg);
    });
    this.exited = new Promise((resolve) => child.on('exit', (code) => {
      for (const w of this.waiting.splice(0)) w({ error: `node process exited (${code}): ${this.stderr.join('').slice(-500)}` });
      resolve(code ?? -1);
    }));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  next(): Promise<Record<string, unknown>> {
    if (this.early.length) return Promise.resolve(this.early.shift() as Record<string, unknown>);
    return new Promise((resolve) => this.waiting.push(resolve as (v: unknown) => void));
  }

  async request(cmd: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.child.stdin!.write(`${JSON.stringify(cmd)}\n`);
    const reply = await this.next();
    if (typeof reply.error === 'string') throw new Error(`node ${this.node.ns}: ${reply.error}`);
    return reply;
  }

  /** Pushes the peer table (through Backend.sync, or straight into the loop). */
  sync(peers: readonly PeerSpec[]): Promise<Record<string, unknown>> {
    return this.request({ op: 'sync', peers });
  }

  async counters(): Promise<UdpCounters> {
    return (await this.request({ op: 'counters' })) as unknown as UdpCounters;
  }

  async features(): Promise<Record<string, unknown>> {
    return this.request({ op: 'features' });
  }

  async stop(teardown = false): Promise<void> {
    if (this.child.exitCode !== null) return;
    await this.request({ op: 'stop', teardown });
    await this.exited;
  }

  /** SIGTERM (or `signal`), as the agent would get it; SIGKILL if it does not go. */
  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<number> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

export interface TestbedOptions {
  /** Namespace/device prefix, e.g. "wud". */
  prefix: string;
  nodes: number;
  underlayMtu?: number;
  /** The whole pod network; node i gets 10.250.i.0/24 inside it. */
  network?: string;
  /** Dual-stack underlay and pods: node i at 2001:db8::i, its pods in 2001:db8:1000:i::/64 of network6. */
  ipv6?: boolean;
}

/** The IPv6 pod network of a testbed with ipv6. */
export const NETWORK6 = '2001:db8:1000::/56';

export class UdpTestbed {
  readonly nodes: TestbedNode[];
  readonly switchNs: string;
  /** An address on the switch namespace's bridge: a host that is not a peer (and its IPv6 one, with ipv6). */
  readonly outsider = '192.0.2.200';
  readonly outsider6 = '2001:db8::c8';
  readonly network: string;
  private readonly children = new Set<NodeProcess>();

  private constructor(readonly o: Required<TestbedOptions>) {
    this.switchNs = `${o.prefix}-sw`;
    this.network = o.network;
    this.nodes = Array.from({ length: o.nodes }, (_, k) => {
      const i = k + 1;
      return {
        index: i,
        ns: `${o.prefix}-n${i}`,
        podNs: `${o.prefix}-p${i}`,
        dev: `${o.prefix}-e${i}`,
        underlay: `192.0.2.${i}`,
        subnet: `10.250.${i}.0/24`,
        pod: `10.250.${i}.5`,
        underlay6: `2001:db8::${i}`,
        subnet6: `2001:db8:1000:${i}::/64`,
        pod6: `2001:db8:1000:${i}::5`,
        runDir: join(runDirs(o.prefix), `n${i}`),
      };
    });
  }

  static async create(options: TestbedOptions): Promise<UdpTestbed> {
    const tb = new UdpTestbed({ underlayMtu: 1500, network: '10.250.0.0/16', ipv6: false, ...options });
    await removeLeftovers(options.prefix);
    try {
      await tb.build();
    } catch (err) {
      await tb.destroy();
      throw err;
    }
    return tb;
  }

  private async build(): Promise<void> {
    const { prefix, underlayMtu } = this.o;
    const sw = this.switchNs;
    await must('ip', ['netns', 'add', sw]);
    await must('ip', ['-n', sw, 'link', 'set', 'lo', 'up']);
    await must('ip', ['-n', sw, 'link', 'add', 'br0', 'type', 'bridge']);
    await must('ip', ['-n', sw, 'link', 'set', 'br0', 'mtu', String(underlayMtu), 'up']);
    await must('ip', ['-n', sw, 'addr', 'add', `${this.outsider}/24`, 'dev', 'br0']);
    // nodad: an address is usable at once, not after duplicate detection.
    if (this.o.ipv6) await must('ip', ['-n', sw, 'addr', 'add', `${this.outsider6}/64`, 'dev', 'br0', 'nodad']);
    for (const n of this.nodes) {
      await mkdir(n.runDir, { recursive: true });
      const port = `${prefix}-s${n.index}`;
      for (const ns of [n.ns, n.podNs]) {
        await must('ip', ['netns', 'add', ns]);
        await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      }
      await must('ip', ['link', 'add', n.dev, 'netns', n.ns, 'mtu', String(underlayMtu), 'type', 'veth', 'peer', 'name', port, 'netns', sw, 'mtu', String(underlayMtu)]);
      await must('ip', ['-n', sw, 'link', 'set', port, 'master', 'br0', 'up']);
      await must('ip', ['-n', n.ns, 'addr', 'add', `${n.underlay}/24`, 'dev', n.dev]);
      await must('ip', ['-n', n.ns, 'link', 'set', n.dev, 'up']);
      const gw = n.pod.replace(/\.5$/, '.1');
      await must('ip', ['link', 'add', `${prefix}-pod`, 'netns', n.podNs, 'type', 'veth', 'peer', 'name', `${prefix}-h`, 'netns', n.ns]);
      await must('ip', ['-n', n.podNs, 'addr', 'add', `${n.pod}/24`, 'dev', `${prefix}-pod`]);
      await must('ip', ['-n', n.podNs, 'link', 'set', `${prefix}-pod`, 'up']);
      await must('ip', ['-n', n.podNs, 'route', 'add', 'default', 'via', gw]);
      await must('ip', ['-n', n.ns, 'addr', 'add', `${gw}/24`, 'dev', `${prefix}-h`]);
      await must('ip', ['-n', n.ns, 'link', 'set', `${prefix}-h`, 'up']);
      await must('ip', ['netns', 'exec', n.ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
      if (this.o.ipv6) await this.buildIpv6(n);
    }
  }

  private async buildIpv6(n: TestbedNode): Promise<void> {
    const { prefix } = this.o;
    const gw = n.pod6.replace(/::5$/, '::1');
    await must('ip', ['-n', n.ns, 'addr', 'add', `${n.underlay6}/64`, 'dev', n.dev, 'nodad']);
    await must('ip', ['-n', n.podNs, 'addr', 'add', `${n.pod6}/64`, 'dev', `${prefix}-pod`, 'nodad']);
    await must('ip', ['-n', n.ns, 'addr', 'add', `${gw}/64`, 'dev', `${prefix}-h`, 'nodad']);
    await must('ip', ['-n', n.podNs, '-6', 'route', 'add', 'default', 'via', gw]);
    await must('ip', ['netns', 'exec', n.ns, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
  }

  /** Peers of node `i` as the agent would pass them: every other node. */
  peersOf(node: TestbedNode): PeerSpec[] {
    return this.nodes
      .filter((n) => n !== node)
      .map((n) => ({ subnet: n.subnet, publicIP: n.underlay, ...(this.o.ipv6 ? { ipv6Subnet: n.subnet6, publicIPv6: n.underlay6 } : {}) }));
  }

  /** Starts the udp loop for `node` in its namespace and waits until it is up. */
  async startNode(node: TestbedNode, config: NodeConfig): Promise<NodeProcess> {
    const cfg = {
      ...config,
      node,
      network: this.network,
      network6: NETWORK6,
      underlayMtu: this.o.underlayMtu,
    };
    const stderr: string[] = [];
    const child = spawn(
      'ip',
      ['netns', 'exec', node.ns, process.execPath, `--import=${pathToFileURL(TS_IMPORT).href}`, NODE_CHILD, JSON.stringify(cfg)],
      { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' } },
    );
    child.stderr!.on('data', (d: Buffer) => {
      stderr.push(d.toString());
      if (stderr.length > 50) stderr.shift();
    });
    const proc = new NodeProcess(node, child, stderr);
    this.children.add(proc);
    void proc.exited.then(() => this.children.delete(proc));
    const first = await Promise.race([proc.next(), proc.exited.then((c) => ({ error: `exited ${c}` }))]);
    if (!(first as { ready?: boolean }).ready) {
      throw new Error(`udp node ${node.ns} did not start: ${JSON.stringify(first)} ${stderr.join('').slice(-800)}`);
    }
    return proc;
  }

  /**
   * Sends `datagrams` to `target`:8285 from `bind` inside namespace `ns`
   * (paced), returning how many the socket accepted.
   */
  async fuzz(ns: string, bind: string, target: string, datagrams: readonly Buffer[]): Promise<{ sent: number; failed: number }> {
    const dir = await mkdtemp(join(tmpdir(), `${this.o.prefix}-fuzz-`));
    try {
      const file = join(dir, 'datagrams.bin');
      const total = datagrams.reduce((n, d) => n + 2 + d.length, 0);
      const blob = Buffer.alloc(total);
      let off = 0;
      for (const d of datagrams) {
        blob.writeUInt16BE(d.length, off);
        for (let i = 0; i < d.length; i++) blob[off + 2 + i] = d[i]!;
        off += 2 + d.length;
      }
      await writeFile(file, new DataView(blob.buffer, blob.byteOffset, blob.length));
      const r = await inNs(ns, process.execPath, [`--import=${pathToFileURL(TS_IMPORT).href}`, FUZZ_CHILD, file, bind, target, '8285'], 300_000);
      if (r.code !== 0) throw new Error(`fuzzer failed: ${r.stderr.slice(-500)}`);
      return JSON.parse(r.stdout.trim().split('\n').pop()!);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Kills every child, every loop process and removes every namespace. */
  async destroy(): Promise<void> {
    await Promise.all([...this.children].map((c) => c.kill()));
    await removeLeftovers(this.o.prefix);
  }
}
