// BIRD as a supervised child process (or someone else's BIRD behind a control
// socket): configs are written atomically, parse-checked with `bird -p`
// before BIRD sees them, and applied with `birdc configure`. BIRD carries the
// node's traffic, so it outlives the agent: a stopping agent leaves it
// running and the next agent adopts it (reconfigures it, watches its pid)
// instead of restarting it.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { access, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { isAlive, sendSignal } from '../../src/core/process.js';
import { WeftError } from '../../src/errors.js';
import { birdAnswers, birdc, birdSocketPath, firstLine, run, showBgpSessions, waitFor } from './birdc.js';
import type { BgpSession } from './status.js';

export interface BirdOptions {
  /** Directory for bird.conf and the control socket (created if missing). */
  dir: string;
  logger: Logger;
  /** Drive the BIRD listening on this control socket instead of starting one (--bird-socket). */
  externalSocket?: string;
  /** Prefix for commands that must run in the node's network namespace, e.g. ['ip', 'netns', 'exec', 'n1']. */
  execPrefix?: string[];
  /** Delay before restarting a BIRD that died, doubled per quick death up to max. */
  restartDelayMs?: { min: number; max: number };
}

const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;
/** A BIRD that ran this long before dying restarts after the minimum delay again. */
const STABLE_MS = 60_000;
/** How often an adopted BIRD (not our child: no exit event) is checked for life: its pid, else its socket. */
const ADOPTED_WATCH_MS = { pid: 500, socket: 2000 };
/** sun_path is 108 bytes on Linux, including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

/** A BIRD an earlier agent started and this one took over: no child handle, so its pid is polled. */
interface Adopted {
  /** Undefined when no process could be matched to the socket: then `birdc show status` is polled. */
  pid: number | undefined;
  since: number;
}

export class Bird {
  readonly socket: string;
  readonly configPath: string;
  readonly pidFile: string;
  private child: ChildProcess | undefined;
  private adopted: Adopted | undefined;
  private watchTimer: NodeJS.Timeout | undefined;
  private childExited: Promise<void> = Promise.resolve();
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private restartDelay: number;
  private applied: string | undefined;
  private rejected: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * Start BIRD in graceful-restart recovery (-R): an earlier BIRD of this node
   * left kernel routes and peers that hold ours. A node's very first BIRD
   * starts without: recovery would hold back its routes until every peer has
   * sent End-of-RIB, slowing a join by seconds for nothing.
   */
  private recovering = false;
  /** ms since epoch when our BIRD (last) started; for the external BIRD, when we first configured it. */
  startedAt: number | undefined;

  private constructor(private readonly opts: BirdOptions) {
    this.socket = opts.externalSocket ?? birdSocketPath(opts.dir);
    this.configPath = join(opts.dir, 'bird.conf');
    this.pidFile = join(opts.dir, 'bird.pid');
    this.restartDelay = opts.restartDelayMs?.min ?? 1000;
  }

  /** Checks the binaries (and the external socket); starts nothing until the first apply(). */
  static async open(opts: BirdOptions): Promise<Bird> {
    const bird = new Bird(opts);
    await mkdir(opts.dir, { recursive: true, mode: 0o700 });
    if (Buffer.byteLength(bird.socket) > MAX_SOCKET_PATH) {
      throw new WeftError(`BIRD control socket path ${bird.socket} is longer than ${MAX_SOCKET_PATH} bytes`, 'use a shorter --run-dir or --bird-socket');
    }
    await bird.checkBinaries();
    // A config from an earlier run: this is a restart of the node's BIRD, not its first start.
    bird.recovering = await access(bird.configPath).then(() => true, () => false);
    if (opts.externalSocket) {
      if (!(await bird.answers())) {
        throw new WeftError(`no BIRD answers on --bird-socket ${opts.externalSocket}`, 'start BIRD 2 with `-s` on that path, or drop --bird-socket to let weft run BIRD');
      }
    } else if (await bird.answers()) {
      // A BIRD left running by an earlier agent (stopped or crashed) holds this
      // node's sessions and kernel routes: keep it. Restarting it, even
      // gracefully, would leave the data path to graceful-restart timers.
      const pid = await findBirdOn(bird.socket, bird.pidFile);
      bird.adopted = { pid, since: Date.now() };
      bird.startedAt = Date.now();
      opts.logger.info({ pid, socket: bird.socket }, 'a BIRD from an earlier run answers on our socket; adopting it');
      bird.watchAdopted();
    }
    return bird;
  }

  get supervised(): boolean {
    return this.opts.externalSocket === undefined;
  }

  /**
   * Makes `text` BIRD's running config. Returns false when it already is (or
   * was rejected before); throws WeftError when BIRD rejects it, leaving the
   * running config in force.
   */
  apply(text: string): Promise<boolean> {
    return this.serialised(async () => {
      if (this.stopping) return false;
      if (text === this.rejected) return false;
      if (text === this.applied && (!this.supervised || this.running)) return false;
      const candidate = `${this.configPath}.new`;
      await writeFile(candidate, text, { mode: 0o600 });
      const check = await run('bird', ['-p', '-c', candidate]);
      if (check.code !== 0) {
        this.rejected = text;
        const rejectedPath = `${this.configPath}.rejected`;
        await rename(candidate, rejectedPath).catch(() => undefined);
        const reason = firstLine(check.stderr || check.stdout).replace(/^bird:\s*/, '');
        throw new WeftError(`BIRD rejected the generated config (${reason})`, `the running config stays in force; the rejected file is ${rejectedPath}`);
      }
      await rename(candidate, this.configPath);
      if (this.supervised && !this.running) {
        await this.start();
      } else {
        await this.configure();
      }
      this.applied = text;
      this.rejected = undefined;
      this.startedAt ??= Date.now();
      return true;
    });
  }

  /** `show protocols all`, parsed to the BGP sessions. */
  async sessions(): Promise<BgpSession[]> {
    return showBgpSessions(this.socket);
  }

  /**
   * Kernel scan now, instead of at BIRD's next periodic one: the kernel
   * protocol (with `learn`) re-installs a route of BIRD's that went missing,
   * and leaves a foreign route that replaced it alone.
   */
  async rescanKernel(protocols: readonly string[]): Promise<void> {
    // One per family: a scan is cheap, and which family lost a route is not worth tracking.
    for (const protocol of protocols) await this.command(['reload', 'in', protocol]);
  }

  /**
   * Stops supervising. `keepRunning` (the agent stops or restarts): BIRD runs
   * on with its sessions and kernel routes, for the next agent to adopt.
   * Otherwise (teardown) BIRD says goodbye and peers withdraw this node's
   * routes. A BIRD someone else runs (--bird-socket) is left alone.
   */
  stop(opts: { keepRunning: boolean }): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    clearTimeout(this.watchTimer);
    this.watchTimer = undefined;
    return this.serialised(async () => {
      if (!this.supervised) return;
      const child = this.child;
      if (opts.keepRunning) {
        // Nothing of ours may keep the agent's process alive, nor BIRD tied to it.
        child?.stderr?.destroy();
        child?.unref();
        return;
      }
      const pid = child?.pid ?? this.adopted?.pid;
      if (!child && !this.adopted) return;
      // Peers withdraw our routes: the next BIRD here starts afresh, not as a restart.
      await rm(this.configPath, { force: true });
      await this.command(['down']).catch((err) =>
        this.opts.logger.warn(`asking BIRD to stop failed (${firstLine(String(err))}); signalling it`),
      );
      const gone = child ? () => exitsWithin(this.childExited, STOP_TIMEOUT_MS) : () => this.adoptedGone(STOP_TIMEOUT_MS);
      if (await gone()) return;
      if (pid !== undefined) sendSignal(pid, 'SIGTERM');
      if (await gone()) return;
      if (pid !== undefined) sendSignal(pid, 'SIGKILL');
      await gone();
    });
  }

  /** BIRD's pid, while it runs: our child's or the adopted one's. */
  get pid(): number | undefined {
    return this.child?.pid ?? this.adopted?.pid;
  }

  /** A BIRD of ours runs: our child, or one adopted from an earlier agent. */
  private get running(): boolean {
    return this.child !== undefined || this.adopted !== undefined;
  }

  /** Polls the adopted BIRD; when it dies it is restarted like a child that exited. */
  private watchAdopted(): void {
    const adopted = this.adopted;
    if (!adopted || this.stopping) return;
    this.watchTimer = setTimeout(() => {
      this.watchTimer = undefined;
      void this.adoptedAlive(adopted).then((alive) => {
        if (this.stopping || this.adopted !== adopted) return;
        if (alive) return this.watchAdopted();
        this.adopted = undefined;
        this.onExit(null, null, Date.now() - adopted.since);
      });
    }, adopted.pid !== undefined ? ADOPTED_WATCH_MS.pid : ADOPTED_WATCH_MS.socket);
    this.watchTimer.unref();
  }

  private async adoptedAlive(adopted: Adopted): Promise<boolean> {
    return adopted.pid !== undefined ? isAlive(adopted.pid) : this.answers();
  }

  /** Waits up to `ms` for the adopted BIRD to be gone; true when it is. */
  private async adoptedGone(ms: number): Promise<boolean> {
    const adopted = this.adopted;
    if (!adopted) return true;
    const gone = await waitFor(async () => !(await this.adoptedAlive(adopted)), ms);
    if (gone) this.adopted = undefined;
    return gone;
  }

  private serialised<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async checkBinaries(): Promise<void> {
    const prefix = this.opts.execPrefix ?? [];
    const birdVersion = await run(prefix[0] ?? 'bird', [...prefix.slice(1), ...(prefix.length ? ['bird'] : []), '--version']);
    if (birdVersion.missing || /not found|No such file/i.test(birdVersion.stderr)) {
      throw new WeftError('BIRD is not installed (no `bird` in PATH)', 'install BIRD 2 (Debian: apt-get install bird2) or pass --bird-socket PATH to drive a running BIRD');
    }
    const version = /BIRD version (\d+)\.\S*/.exec(birdVersion.stdout + birdVersion.stderr);
    if (version && version[1] !== '2') {
      throw new WeftError(`BIRD ${version[0].replace('BIRD version ', '')} found; weft's bgp backend needs BIRD 2`, 'install BIRD 2 (Debian: apt-get install bird2)');
    }
    const client = await run('birdc', ['-s', this.socket, 'show', 'status']);
    if (client.missing) {
      throw new WeftError('birdc is not installed (no `birdc` in PATH)', 'install BIRD 2 with its client (Debian: apt-get install bird2)');
    }
  }

  private answers(): Promise<boolean> {
    return birdAnswers(this.socket);
  }

  private command(args: string[]): Promise<string> {
    return birdc(this.socket, args);
  }

  private async configure(): Promise<void> {
    if (this.configPath.includes('"')) throw new WeftError(`config path ${this.configPath} contains a double quote`, 'use a --run-dir without quotes');
    const out = await this.command(['configure', `"${this.configPath}"`]);
    // 0003 Reconfigured, 0004 in progress, 0005 queued: BIRD has the new config.
    if (!/^000[345][ -]/m.test(out)) {
      const why = out.split('\n').find((l) => /^[89]\d{3}/.test(l))?.slice(5) ?? firstLine(out);
      throw new WeftError(`BIRD did not take the new config: ${why}`, 'the running config stays in force');
    }
  }

  private async start(): Promise<void> {
    const prefix = this.opts.execPrefix ?? [];
    const [cmd, ...args] = [...prefix, 'bird', '-f', ...(this.recovering ? ['-R'] : []), '-c', this.configPath, '-s', this.socket, '-P', this.pidFile];
    this.recovering = true; // every later start (after BIRD died) is a restart
    // Own process group: a Ctrl-C meant for the agent must not reach BIRD, whose
    // shutdown would withdraw this node's routes from every peer. It outlives
    // the agent (BIRD ignores SIGPIPE, so the closed stderr pipe does not kill it).
    const child = spawn(cmd!, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    this.child = child;
    const recent: string[] = [];
    let buffered = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        recent.push(line);
        if (recent.length > 5) recent.shift();
        this.logBirdLine(line);
      }
    });
    const startedAt = Date.now();
    this.childExited = new Promise((resolve) => {
      child.once('error', (err) => {
        this.opts.logger.error(`starting BIRD failed: ${err.message}`);
      });
      child.once('close', (code, signal) => {
        if (this.child === child) this.child = undefined;
        resolve();
        this.onExit(code, signal, Date.now() - startedAt);
      });
    });
    const up = await waitFor(() => this.answers(), START_TIMEOUT_MS, this.childExited);
    if (!up) {
      child.kill('SIGKILL');
      await this.childExited;
      const said = recent.filter((l) => l.trim()).slice(-1)[0] ?? 'no output';
      throw new WeftError(`BIRD did not start (${said.slice(0, 200)})`, `check that nothing else uses ${this.socket} and that BIRD may bind TCP port 179`);
    }
    this.startedAt = Date.now();
    this.opts.logger.info({ pid: child.pid, socket: this.socket }, 'BIRD started');
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null, ranMs: number): void {
    if (this.stopping) {
      this.opts.logger.info({ code, signal }, 'BIRD stopped');
      return;
    }
    const max = this.opts.restartDelayMs?.max ?? 30_000;
    const min = this.opts.restartDelayMs?.min ?? 1000;
    if (ranMs >= STABLE_MS) this.restartDelay = min;
    const delay = this.restartDelay;
    this.restartDelay = Math.min(max, this.restartDelay * 2);
    this.opts.logger.warn({ code, signal, restartInMs: delay }, 'BIRD exited; restarting it (kernel routes stay, peers keep ours through graceful restart)');
    if (this.restartTimer) return;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      void this.serialised(async () => {
        if (this.stopping || this.running) return;
        // A failed start ends in the child's exit, which schedules the next attempt.
        await this.start().catch((err: Error) => this.opts.logger.error(`restarting BIRD failed: ${firstLine(err.message)}`));
      });
    }, delay);
    this.restartTimer.unref();
  }

  private logBirdLine(line: string): void {
    const m = /<(\w+)>\s*(.*)$/.exec(line);
    const level = m?.[1] ?? 'INFO';
    const text = m?.[2] ?? line;
    if (text === 'Shutdown completed' || level === 'INFO' || level === 'TRACE' || level === 'DBG') this.opts.logger.debug({ bird: text });
    else if (level === 'WARN' || level === 'RMT' || level === 'AUTH') this.opts.logger.warn({ bird: text }, 'BIRD');
    else this.opts.logger.error({ bird: text }, 'BIRD');
  }
}

/**
 * The pid of the BIRD serving control socket `socket`: the one its pid file
 * names, else any `bird` process whose command line names the socket (a BIRD
 * started before weft wrote pid files). Undefined when none is found.
 */
async function findBirdOn(socket: string, pidFile: string): Promise<number | undefined> {
  const recorded = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  const all = (await readdir('/proc').catch(() => [] as string[])).filter((e) => /^\d+$/.test(e)).map(Number);
  return [recorded, ...all].find((pid) => Number.isInteger(pid) && pid > 0 && isBirdOn(pid, socket));
}

function isBirdOn(pid: number, socket: string): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return /(^|\/)bird$/.test(argv[0] ?? '') && argv.includes(socket) && isAlive(pid);
  } catch {
    return false;
  }
}

async function exitsWithin(exited: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
  const done = await Promise.race([exited.then(() => true), timeout]);
  clearTimeout(timer);
  return done;
}
