// Namespaces for the bgp end-to-end tests: node namespaces on one underlay
// bridge (198.51.100.0/24, and 2001:db8::/64 when dual-stack), each with a
// port-less bridge holding its pod subnets' first addresses (the CNI
// bridge's stand-in), a ToR namespace for gobgpd, and the cleanup that
// leaves nothing behind. Every name starts with the test's own prefix.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Family } from '../../../src/core/cidr.js';
import { until } from './lab-fixture.js';

export const TOR = 254;

export function sh(argv: string[], opts: { check?: boolean; timeoutMs?: number } = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { timeout: opts.timeoutMs ?? 20_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      if (code !== 0 && opts.check !== false) reject(new Error(`${argv.join(' ')}: ${stderr || stdout || err?.message}`));
      else resolve({ code, out: `${stdout}` });
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Node n's underlay address of a family: 198.51.100.n or 2001:db8::n. */
export function underlayIP(n: number, family: Family): string {
  return family === 4 ? `198.51.100.${n}` : `2001:db8::${n}`;
}

/** Node n's pod subnet of a family: 10.5.n.0/24 or 2001:db8:1000:n::/64. */
export function podSubnet(n: number, family: Family): string {
  return family === 4 ? `10.5.${n}.0/24` : `2001:db8:1000:${n}::/64`;
}

/** The first address of node n's pod subnet (the bridge's), which stands in for a pod. */
export function podAddress(n: number, family: Family): string {
  return family === 4 ? `10.5.${n}.1` : `2001:db8:1000:${n}::1`;
}

export class BgpNetns {
  readonly switchNs: string;
  readonly torNs: string;
  private gobgpd: ChildProcess | undefined;

  /** `prefix` starts every namespace, device and temp dir name; `families` are the underlay's and the pods'. */
  constructor(readonly prefix: string, readonly families: readonly Family[], private readonly logger: Logger) {
    this.switchNs = `${prefix}sw`;
    this.torNs = `${prefix}tor`;
  }

  nodeNs(n: number): string {
    return `${this.prefix}n${n}`;
  }

  inNs(n: number | string, argv: string[]): string[] {
    return ['ip', 'netns', 'exec', typeof n === 'number' ? this.nodeNs(n) : n, ...argv];
  }

  /** The node's underlay device. */
  dev(n: number): string {
    return `${this.prefix}e${n}`;
  }

  /** Namespaces, processes and temp dirs of earlier runs: processes first (by pid, found per namespace). */
  async cleanup(): Promise<void> {
    const { out } = await sh(['ip', 'netns', 'list'], { check: false });
    const spaces = out.split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(this.prefix));
    for (const ns of spaces) {
      const pids = (await sh(['ip', 'netns', 'pids', ns], { check: false })).out.split(/\s+/).filter(Boolean);
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* gone already */
        }
      }
    }
    for (const ns of spaces) await sh(['ip', 'netns', 'del', ns], { check: false });
    for (const entry of await readdir(tmpdir())) {
      if (entry.startsWith(`${this.prefix}e2e-`)) await rm(join(tmpdir(), entry), { recursive: true, force: true });
    }
  }

  /** The underlay switch, the nodes (with pod bridges) and the ToR namespace (without). */
  async setUp(nodes: readonly number[]): Promise<void> {
    await sh(['ip', 'netns', 'add', this.switchNs]);
    await sh(['ip', '-n', this.switchNs, 'link', 'add', `${this.prefix}br`, 'type', 'bridge']);
    await sh(['ip', '-n', this.switchNs, 'link', 'set', `${this.prefix}br`, 'up']);
    for (const n of nodes) await this.addHost(n, this.nodeNs(n), true);
    await this.addHost(TOR, this.torNs, false);
  }

  private async addHost(n: number, ns: string, pods: boolean): Promise<void> {
    const ip = (...args: string[]): Promise<unknown> => sh(['ip', '-n', ns, ...args]);
    await sh(['ip', 'netns', 'add', ns]);
    await ip('link', 'set', 'lo', 'up');
    await sh(['ip', 'link', 'add', this.dev(n), 'netns', ns, 'type', 'veth', 'peer', 'name', `${this.prefix}p${n}`, 'netns', this.switchNs]);
    for (const family of this.families) {
      // nodad: BIRD binds the address at once, before duplicate detection would have finished.
      await ip('addr', 'add', `${underlayIP(n, family)}/${family === 4 ? 24 : 64}`, 'dev', this.dev(n), ...(family === 6 ? ['nodad'] : []));
    }
    await ip('link', 'set', this.dev(n), 'up');
    await sh(['ip', '-n', this.switchNs, 'link', 'set', `${this.prefix}p${n}`, 'master', `${this.prefix}br`, 'up']);
    if (!pods) return;
    await ip('link', 'add', `${this.prefix}cni`, 'type', 'bridge');
    for (const family of this.families) {
      await ip('addr', 'add', `${podAddress(n, family)}/${family === 4 ? 24 : 64}`, 'dev', `${this.prefix}cni`, ...(family === 6 ? ['nodad'] : []));
    }
    await ip('link', 'set', `${this.prefix}cni`, 'up');
  }

  /** prefix -> gateway of the routes BIRD put into a namespace's kernel, of one family. */
  async birdRoutes(ns: string, family: Family = 4): Promise<Map<string, string>> {
    const { out } = await sh(['ip', '-n', ns, `-${family}`, 'route', 'show', 'proto', 'bird']);
    const routes = new Map<string, string>();
    for (const line of out.split('\n')) {
      const m = /^(\S+)\s+via\s+(\S+)/.exec(line);
      if (m) routes.set(m[1]!, m[2]!);
    }
    return routes;
  }

  /** The pid of the BIRD running in node n's namespace. */
  async birdPid(n: number): Promise<number | undefined> {
    const pids = (await sh(['ip', 'netns', 'pids', this.nodeNs(n)])).out.split(/\s+/).filter(Boolean);
    for (const pid of pids) {
      const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
      if (comm.trim() === 'bird') return Number(pid);
    }
    return undefined;
  }

  /** gobgpd in the ToR namespace with `conf` (TOML), its API on the ToR's IPv4 address. */
  async startGobgpd(runDir: string, conf: string): Promise<void> {
    const file = join(runDir, 'gobgpd.toml');
    await writeFile(file, conf);
    const p = spawn('ip', ['netns', 'exec', this.torNs, 'gobgpd', '-f', file, '-t', 'toml', '--api-hosts', `198.51.100.${TOR}:50051`, '--pprof-disable', '-l', 'warn', '-p'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.gobgpd = p;
    p.stderr!.on('data', (d: Buffer) => this.logger.debug({ gobgpd: d.toString().trim() }));
    await until('gobgpd API', async () => (await this.gobgp(['global'])).code === 0, 20_000);
  }

  async stopGobgpd(): Promise<void> {
    const p = this.gobgpd;
    this.gobgpd = undefined;
    if (!p || p.exitCode !== null) return;
    const closed = new Promise((r) => p.once('close', r));
    p.kill('SIGTERM');
    await Promise.race([closed, sleep(5000)]);
    if (p.exitCode === null) p.kill('SIGKILL');
  }

  gobgp(args: string[]): Promise<{ code: number; out: string }> {
    return sh(this.inNs(this.torNs, ['gobgp', '-u', `198.51.100.${TOR}`, ...args]), { check: false });
  }

  /** prefix -> next hops of the paths in gobgpd's global RIB of one family. */
  async torRib(family: Family = 4): Promise<Map<string, string[]>> {
    const { out } = await this.gobgp(['global', 'rib', '-a', `ipv${family}`, '-j']);
    const rib = JSON.parse(out || '{}') as Record<string, { nlri: { prefix: string }; attrs: { type: number; nexthop?: string; nexthops?: string[] }[] }[]>;
    const result = new Map<string, string[]>();
    for (const [prefix, paths] of Object.entries(rib)) {
      result.set(prefix, paths.map((p) => p.attrs.find((a) => a.nexthop !== undefined)?.nexthop ?? p.attrs.find((a) => a.nexthops !== undefined)?.nexthops?.[0] ?? '?'));
    }
    return result;
  }
}
