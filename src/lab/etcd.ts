// A real etcd (Debian's etcd-server, 3.4) for the lab and the etcd tests:
// its own temp dir for data and log, chosen ports, optionally inside a
// network namespace, and started/stopped/killed/restarted on demand; and the
// lab's etcdctl client for reading and writing keys from outside the agents.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../errors.js';
import { isAlive } from '../core/process.js';
import { runCommand, type CommandResult } from './command.js';
import { lastLogLine } from './last-log-line.js';

export interface EtcdServerOptions {
  /** Run inside this network namespace (`ip netns exec NS etcd ...`). */
  netns?: string;
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Default: a free loopback pair in the root namespace; 2379/2380 inside a namespace. */
  clientPort?: number;
  peerPort?: number;
  /** Where etcd's own temp dir is made (default the system temp dir). */
  parentDir?: string;
  /** Name prefix of that temp dir; `removeEtcdLeftovers(tag)` finds crashed runs by it. */
  tag?: string;
  /** Keep etcd running after this process exits (a lab outlives `weft lab up`). */
  detached?: boolean;
  /** Give up waiting for health after this long (default 30 s). */
  startTimeoutMs?: number;
  binary?: string;
  etcdctl?: string;
  /** Member name (default "weft-etcd"). */
  name?: string;
  /** Membership of a multi-member cluster (EtcdCluster sets it); default a cluster of this one member. */
  cluster?: { initialCluster: string; token: string };
  /** Don't wait for health after launching (a cluster member is healthy only once a quorum runs). */
  noWait?: boolean;
  /** Serve clients over TLS (https client URLs); peer traffic stays plaintext. */
  tls?: EtcdTls;
}

/** etcd's client-side TLS: the server's own certificate, and the client certificate etcdctl presents. */
export interface EtcdTls {
  caFile: string;
  certFile: string;
  keyFile: string;
  /** Refuse clients without a certificate signed by `caFile` (--client-cert-auth). */
  clientCertAuth: boolean;
  /** What etcdctl (health checks, the lab's reads and writes) presents. */
  clientCertFile: string;
  clientKeyFile: string;
}

/** etcdctl's flags for `tls` (none without it). */
export function etcdctlTlsArgs(tls: EtcdTls | undefined): string[] {
  return tls ? [`--cacert=${tls.caFile}`, `--cert=${tls.clientCertFile}`, `--key=${tls.clientKeyFile}`] : [];
}

const DEFAULT_TAG = 'weft-etcd-';
/** Records who started etcd, so leftovers of a crashed run can be told from live ones. */
const OWNER_FILE = 'owner.json';

interface OwnerRecord {
  owner: number;
  etcd: number;
  detached: boolean;
}

function requireExecutable(path: string, pkg: string): void {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new WeftError(`${path} is missing`, `install it: apt-get install ${pkg}`);
  }
}

/** `http://host:port` (https with `tls`), an IPv6 host in brackets. */
export function httpUrl(host: string, port: number, tls = false): string {
  return `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** Two ports free on `host` right now (a small race remains; etcd reports it clearly if lost). */
async function freePortPair(host: string): Promise<[number, number]> {
  const servers = [createServer(), createServer()];
  const ports = await Promise.all(
    servers.map(
      (s) =>
        new Promise<number>((resolve, reject) => {
          s.once('error', reject);
          s.listen(0, host, () => resolve((s.address() as { port: number }).port));
        }),
    ),
  );
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return [ports[0]!, ports[1]!];
}

/** The environment without ETCD_* / ETCDCTL_* settings that would override our flags. */
export function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_') && !k.startsWith('ETCDCTL_')));
}

export class EtcdServer {
  /** The client URL, e.g. "http://127.0.0.1:40123". */
  readonly endpoint: string;
  /** etcd's temp dir: data/, etcd.log, owner.json. */
  readonly dir: string;
  readonly logFile: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  /** An attached etcd dies with us, even on process.exit(); removeEtcdLeftovers covers signals. */
  private readonly killOnExit = () => {
    if (this.running) this.child?.kill('SIGKILL');
  };

  private constructor(
    private readonly opts: EtcdServerOptions,
    readonly host: string,
    readonly clientPort: number,
    readonly peerPort: number,
  ) {
    this.endpoint = httpUrl(host, clientPort, !!opts.tls);
    this.dir = mkdtempSync(join(opts.parentDir ?? tmpdir(), opts.tag ?? DEFAULT_TAG));
    this.logFile = join(this.dir, 'etcd.log');
  }

  /** Starts etcd and waits until it answers a health check. */
  static async start(opts: EtcdServerOptions = {}): Promise<EtcdServer> {
    requireExecutable(opts.binary ?? '/usr/bin/etcd', 'etcd-server');
    requireExecutable(opts.etcdctl ?? '/usr/bin/etcdctl', 'etcd-client');
    const host = opts.host ?? '127.0.0.1';
    let [clientPort, peerPort] = [opts.clientPort, opts.peerPort];
    if (clientPort === undefined || peerPort === undefined) {
      const [c, p] = opts.netns ? [2379, 2380] : await freePortPair(host);
      clientPort ??= c;
      peerPort ??= p;
    }
    const server = new EtcdServer(opts, host, clientPort, peerPort);
    try {
      await server.launch();
    } catch (err) {
      await server.cleanup();
      throw err;
    }
    return server;
  }

  /** The etcd process id while it runs. */
  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  get running(): boolean {
    return this.pid !== undefined;
  }

  /** Graceful stop: SIGTERM, SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    child.kill('SIGTERM');
    const done = await Promise.race([this.exited.then(() => true), sleep(graceMs).then(() => false)]);
    if (!done) await this.kill();
  }

  /** Abrupt stop (SIGKILL), as a crash or power loss would. */
  async kill(): Promise<void> {
    if (!this.child || !this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** Starts again with the same data dir and ports (stopping first if running). */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  /** Stops etcd and removes its temp dir. */
  async cleanup(): Promise<void> {
    await this.stop(3000);
    await rm(this.dir, { recursive: true, force: true });
  }

  /** The member name. */
  get name(): string {
    return this.opts.name ?? 'weft-etcd';
  }

  /** The peer URL other members reach this one at. */
  get peerUrl(): string {
    return httpUrl(this.host, this.peerPort);
  }

  /** Waits until this member answers a health check (a cluster member: once a quorum runs). */
  waitUntilHealthy(timeoutMs = this.opts.startTimeoutMs ?? 30_000): Promise<void> {
    return this.waitHealthy(timeoutMs);
  }

  private args(): string[] {
    const url = (port: number) => httpUrl(this.host, port);
    const name = this.name;
    const tls = this.opts.tls;
    return [
      `--name=${name}`,
      `--data-dir=${join(this.dir, 'data')}`,
      `--listen-client-urls=${this.endpoint}`,
      `--advertise-client-urls=${this.endpoint}`,
      ...(tls ? [`--cert-file=${tls.certFile}`, `--key-file=${tls.keyFile}`, `--trusted-ca-file=${tls.caFile}`, ...(tls.clientCertAuth ? ['--client-cert-auth'] : [])] : []),
      `--listen-peer-urls=${url(this.peerPort)}`,
      `--initial-advertise-peer-urls=${url(this.peerPort)}`,
      `--initial-cluster=${this.opts.cluster?.initialCluster ?? `${name}=${url(this.peerPort)}`}`,
      '--initial-cluster-state=new',
      `--initial-cluster-token=${this.opts.cluster?.token ?? this.dir}`,
      '--logger=zap',
      '--log-outputs=stderr',
    ];
  }

  /** The full command line etcd runs with (inside its namespace): what a restart by another process runs again. */
  get commandLine(): string[] {
    const argv = [this.opts.binary ?? '/usr/bin/etcd', ...this.args()];
    return this.opts.netns ? ['ip', 'netns', 'exec', this.opts.netns, ...argv] : argv;
  }

  private async launch(): Promise<void> {
    const full = this.commandLine;
    const log = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(full[0]!, full.slice(1), { stdio: ['ignore', log, log], env: cleanEnv(), detached: !!this.opts.detached });
    } finally {
      closeSync(log);
    }
    child.on('error', () => {}); // a failed spawn shows up as an early exit below
    if (this.opts.detached) child.unref();
    this.child = child;
    this.exited = new Promise((resolve) =>
      child.once('exit', () => {
        process.removeListener('exit', this.killOnExit);
        resolve();
      }),
    );
    if (!this.opts.detached) process.on('exit', this.killOnExit);
    const record: OwnerRecord = { owner: process.pid, etcd: child.pid ?? 0, detached: !!this.opts.detached };
    writeFileSync(join(this.dir, OWNER_FILE), JSON.stringify(record) + '\n');
    if (!this.opts.noWait) await this.waitHealthy(this.opts.startTimeoutMs ?? 30_000);
  }

  private async waitHealthy(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running) {
        throw new WeftError(`etcd exited while starting (${this.lastLogLine()})`, `see ${this.logFile}`);
      }
      if (await this.healthy()) return;
      if (Date.now() > deadline) {
        await this.kill();
        throw new WeftError(`etcd at ${this.endpoint} was not healthy after ${timeoutMs} ms`, `see ${this.logFile}`);
      }
      await sleep(100);
    }
  }

  private healthy(): Promise<boolean> {
    const argv = [this.opts.etcdctl ?? '/usr/bin/etcdctl', `--endpoints=${this.endpoint}`, ...etcdctlTlsArgs(this.opts.tls), '--dial-timeout=1s', '--command-timeout=2s', 'endpoint', 'health'];
    const full = this.opts.netns ? ['ip', 'netns', 'exec', this.opts.netns, ...argv] : argv;
    return new Promise((resolve) => {
      const p = spawn(full[0]!, full.slice(1), { stdio: 'ignore', env: cleanEnv() });
      const timer = setTimeout(() => p.kill('SIGKILL'), 5000);
      p.on('error', () => resolve(false));
      p.on('exit', (code) => {
        clearTimeout(timer);
        resolve(code === 0);
      });
    });
  }

  /** This member's id and the leader it knows (ids as decimal strings; leader "0" when it knows none), or undefined when it does not answer. */
  status(): Promise<EtcdMemberStatus | undefined> {
    return etcdMemberStatus(this.endpoint, { netns: this.opts.netns, tls: this.opts.tls, etcdctl: this.opts.etcdctl });
  }

  /** The last message etcd logged, for a one-line start failure. */
  private lastLogLine(): string {
    try {
      const lines = readFileSync(this.logFile, 'utf8').trim().split('\n');
      const last = lines[lines.length - 1] ?? '';
      try {
        const rec = JSON.parse(last) as { msg?: string; error?: string };
        return [rec.msg, rec.error].filter(Boolean).join(': ').slice(0, 200) || 'no log output';
      } catch {
        return last.slice(0, 200) || 'no log output';
      }
    } catch {
      return 'no log output';
    }
  }
}

export interface EtcdMemberStatus {
  memberId: string;
  /** The leader's member id; "0" when the member knows none. */
  leader: string;
}

/** Of `members`, the one that leads by its own word (its id is the leader it reports), or undefined when none does. */
export async function leaderAmong<M>(members: readonly M[], status: (m: M) => Promise<EtcdMemberStatus | undefined>): Promise<M | undefined> {
  const statuses = await Promise.all(members.map(status));
  return members.find((_, i) => statuses[i] !== undefined && statuses[i]!.memberId === statuses[i]!.leader);
}

/** A member's id and the leader it knows (ids as decimal strings), or undefined when it does not answer. */
export async function etcdMemberStatus(endpoint: string, opts: { netns?: string; tls?: EtcdTls; etcdctl?: string } = {}): Promise<EtcdMemberStatus | undefined> {
  const argv = [opts.etcdctl ?? '/usr/bin/etcdctl', `--endpoints=${endpoint}`, ...etcdctlTlsArgs(opts.tls), '--dial-timeout=1s', '--command-timeout=2s', 'endpoint', 'status', '-w', 'json'];
  const r = await runCommand(argv, { ...(opts.netns ? { netns: opts.netns } : {}), check: false, timeoutMs: 5000 });
  if (r.code !== 0) return undefined;
  try {
    // etcdctl prints ids as JSON numbers beyond 2^53: read them as text.
    const text = r.stdout.replace(/"(member_id|leader)":(\d+)/g, '"$1":"$2"');
    const [row] = JSON.parse(text) as { Status: { header: { member_id: string }; leader: string } }[];
    return row ? { memberId: row.Status.header.member_id, leader: row.Status.leader } : undefined;
  } catch {
    return undefined;
  }
}

/** One member of an EtcdCluster: where it runs. */
export interface EtcdMemberPlace {
  /** Network namespace of the member (default the caller's). */
  netns?: string;
  /** Address it listens on (default 127.0.0.1). */
  host?: string;
}

/**
 * A multi-member etcd (3 or 5 members, say): each member an EtcdServer with
 * its own data dir, in its own namespace or on its own loopback ports, all
 * started at once (a member is healthy only once a quorum runs). Members can
 * be killed and restarted one by one to take the leader or the quorum away.
 */
export class EtcdCluster {
  private constructor(readonly members: readonly EtcdServer[]) {}

  /**
   * Starts one member per entry of `places`, named `<namePrefix>1`, ...;
   * `opts` apply to every member (tag, parentDir, detached, binaries).
   */
  static async start(places: readonly EtcdMemberPlace[], opts: Omit<EtcdServerOptions, 'netns' | 'host' | 'clientPort' | 'peerPort' | 'name' | 'cluster' | 'noWait'> & { namePrefix?: string } = {}): Promise<EtcdCluster> {
    if (places.length === 0) throw new WeftError('an etcd cluster needs at least one member', 'pass one place per member');
    const prefix = opts.namePrefix ?? 'etcd';
    const planned = await Promise.all(
      places.map(async (place, i) => {
        const host = place.host ?? '127.0.0.1';
        const [clientPort, peerPort] = place.netns ? [2379, 2380] : await freePortPair(host);
        return { ...place, host, clientPort, peerPort, name: `${prefix}${i + 1}` };
      }),
    );
    const cluster = { initialCluster: planned.map((m) => `${m.name}=${httpUrl(m.host, m.peerPort)}`).join(','), token: `weft-${process.pid}-${Date.now()}` };
    const started: EtcdServer[] = [];
    try {
      for (const m of planned) started.push(await EtcdServer.start({ ...opts, ...m, cluster, noWait: true }));
      await Promise.all(started.map((s) => s.waitUntilHealthy()));
    } catch (err) {
      await Promise.all(started.map((s) => s.cleanup()));
      throw err;
    }
    return new EtcdCluster(started);
  }

  /** Every member's client URL. */
  get endpoints(): string[] {
    return this.members.map((m) => m.endpoint);
  }

  /** The member that leads now (by its own word), or undefined when none does (no quorum, an election under way). */
  leader(): Promise<EtcdServer | undefined> {
    return leaderAmong(this.members.filter((m) => m.running), (m) => m.status());
  }

  /** Stops every member and removes their dirs. */
  async cleanup(): Promise<void> {
    await Promise.all(this.members.map((m) => m.cleanup()));
  }
}

/**
 * Removes what a crashed run left under the temp dir with `tag`: kills its
 * etcd and deletes the dir. Dirs whose owner still runs, or whose etcd was
 * started detached on purpose, are left alone.
 */
export async function removeEtcdLeftovers(tag: string, parentDir = tmpdir()): Promise<void> {
  for (const name of await readdir(parentDir).catch(() => [] as string[])) {
    if (!name.startsWith(tag)) continue;
    const dir = join(parentDir, name);
    let rec: OwnerRecord | undefined;
    try {
      rec = JSON.parse(await readFile(join(dir, OWNER_FILE), 'utf8')) as OwnerRecord;
    } catch {
      // no record: a start that failed before spawning
    }
    if (rec && (rec.detached || isAlive(rec.owner))) continue;
    if (rec && isAlive(rec.etcd)) {
      let cmd = '';
      try {
        cmd = readFileSync(`/proc/${rec.etcd}/cmdline`, 'utf8');
      } catch {
        // exited meanwhile
      }
      if (cmd.includes(dir)) {
        process.kill(rec.etcd, 'SIGKILL');
        for (let i = 0; i < 50 && isAlive(rec.etcd); i++) await sleep(50);
      }
    }
    await rm(dir, { recursive: true, force: true });
  }
}

/** etcdctl against an etcd reachable from namespace `netns` (the lab's underlay). */
export class Etcdctl {
  constructor(
    /** One client URL, or several comma-separated. */
    private readonly endpoint: string,
    private readonly netns: string,
    private readonly tls?: EtcdTls,
  ) {}

  /** `keepLease` rewrites the value on the key's current etcd lease (TTL kept), as an agent republishing does. */
  async put(key: string, value: string, opts: { keepLease?: boolean } = {}): Promise<void> {
    await this.run(['put', key, ...(opts.keepLease ? ['--ignore-lease'] : [])], value);
  }

  async get(key: string): Promise<string | undefined> {
    return (await this.read(key, false)).get(key);
  }

  /** Every key under `prefix` with its value. */
  async list(prefix: string): Promise<Map<string, string>> {
    return this.read(prefix, true);
  }

  /** Deletes `key` (or every key under it with `prefix: true`); returns how many were deleted. */
  async del(key: string, opts: { prefix?: boolean } = {}): Promise<number> {
    const r = await this.run(['del', key, ...(opts.prefix ? ['--prefix'] : [])]);
    return Number(r.stdout.trim()) || 0;
  }

  /** etcd answering its health check is not yet etcd accepting writes through this path: wait for that. */
  async waitHealthy(logFile: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.run(['endpoint', 'health'], undefined, false);
      if (r.code === 0) return;
      if (Date.now() > deadline) throw new WeftError(`the lab's etcd did not become healthy: ${lastLogLine(logFile)}`, `see ${logFile}`);
      await sleep(200);
    }
  }

  private run(args: string[], input?: string, check = true): Promise<CommandResult> {
    return runCommand(['etcdctl', `--endpoints=${this.endpoint}`, ...etcdctlTlsArgs(this.tls), '--dial-timeout=3s', '--command-timeout=10s', ...args], {
      netns: this.netns,
      input,
      check,
    });
  }

  private async read(key: string, prefix: boolean): Promise<Map<string, string>> {
    const r = await this.run(['get', key, ...(prefix ? ['--prefix'] : []), '-w', 'json']);
    const parsed = JSON.parse(r.stdout) as { kvs?: Array<{ key: string; value?: string }> };
    const b64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('utf8');
    return new Map((parsed.kvs ?? []).map((kv) => [b64(kv.key), b64(kv.value)]));
  }
}
