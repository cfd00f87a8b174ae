// Talking to a BIRD 2 over its control socket with birdc: sessions, whether
// it answers, commands with BIRD's reply codes mapped to one-line errors, and
// the node teardown that stops weft's own BIRD and flushes its routes.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { sleep } from '../../src/core/backoff.js';
import { runCommand } from '../../src/core/command.js';
import { flushProtocolRoutes } from '../../src/dataplane/iproute.js';
import { WeftError, oneLine } from '../../src/errors.js';
import { ROUTED_PREFIXES_LINE } from './config.js';
import { parseBgpSessions, type BgpSession } from './status.js';

const BIRDC_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;

/** Where weft's own BIRD listens, below the agent's run directory. */
export function birdSocketPath(dir: string): string {
  return join(dir, 'bird.ctl');
}

/** A program's exit code and output, through the one subprocess runner. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The program itself was not found. */
  missing: boolean;
}

/** Runs a BIRD tool; a missing program is reported as `missing`, not thrown (the callers name the package). */
export async function run(cmd: string, args: string[], timeout = BIRDC_TIMEOUT_MS): Promise<RunResult> {
  try {
    return { ...(await runCommand([cmd, ...args], { timeoutMs: timeout, check: false })), missing: false };
  } catch (err) {
    if (!(err instanceof WeftError)) throw err;
    return { code: 127, stdout: '', stderr: err.message, missing: true };
  }
}

export function firstLine(text: string): string {
  return text.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? '';
}

/** True when the BIRD behind `socket` answers and is up. */
export async function birdAnswers(socket: string): Promise<boolean> {
  const r = await run('birdc', ['-s', socket, 'show', 'status'], 3000);
  return r.code === 0 && /Daemon is up and running/.test(r.stdout);
}

/** `birdc -v -s socket args...`; its output, or a one-line WeftError with BIRD's reason. */
export async function birdc(socket: string, args: string[]): Promise<string> {
  const r = await run('birdc', ['-v', '-s', socket, ...args]);
  if (r.code !== 0) {
    const why = firstLine(r.stderr || r.stdout.split('\n').find((l) => /^[89]\d{3}/.test(l)) || r.stdout) || `exit code ${r.code}`;
    throw new WeftError(`birdc ${args.join(' ')} failed: ${why}`, `is BIRD running with control socket ${socket}?`);
  }
  return r.stdout;
}

/** The BGP sessions of the BIRD behind `socket` (for `weft status` and readiness). */
export async function showBgpSessions(socket: string): Promise<BgpSession[]> {
  const r = await run('birdc', ['-s', socket, 'show', 'protocols', 'all']);
  if (r.missing) throw new WeftError('birdc is not installed (no `birdc` in PATH)', 'install BIRD 2 (Debian: apt-get install bird2)');
  if (r.code !== 0) {
    throw new WeftError(`cannot reach BIRD at ${socket}: ${firstLine(r.stderr || r.stdout)}`, 'is the agent (or the BIRD given by --bird-socket) running?');
  }
  return parseBgpSessions(r.stdout);
}

/**
 * For `weft agent --teardown`: stops the node's own BIRD (the one under
 * `dir`, never one given by --bird-socket) so peers withdraw this node, and
 * flushes the routes it kept in the kernel (`persist`), in every family:
 * inside the prefixes its config names (each family's Network and the
 * AllowedPrefixes), else inside `network` (a config from before that line).
 * Does nothing where weft never ran BIRD.
 */
export async function removeOwnBird(dir: string, network: string | undefined): Promise<boolean> {
  let conf: string;
  try {
    conf = await readFile(join(dir, 'bird.conf'), 'utf8');
  } catch {
    return false;
  }
  const socket = birdSocketPath(dir);
  const down = await run('birdc', ['-s', socket, 'down'], 5000);
  // The agent leaves BIRD running: flush only once it has gone, or it might re-add what was flushed.
  if (down.code === 0) await waitFor(async () => (await run('birdc', ['-s', socket, 'show', 'status'], 3000)).code !== 0, STOP_TIMEOUT_MS);
  const named = ROUTED_PREFIXES_LINE.exec(conf)?.[1]?.split(/\s+/).filter(Boolean);
  for (const prefix of named ?? (network ? [network] : [])) {
    await flushProtocolRoutes(prefix, 'bird').catch((err: unknown) => {
      throw new WeftError(`cannot flush BIRD's routes in ${prefix}: ${oneLine(err)}`, 'remove them with ip route flush proto bird');
    });
  }
  await rm(join(dir, 'bird.conf'), { force: true });
  return true;
}

/** Polls `check` until true or the deadline (or `abort` settles); true when it became true. */
export async function waitFor(check: () => Promise<boolean>, ms: number, abort?: Promise<void>): Promise<boolean> {
  let aborted = false;
  void abort?.then(() => (aborted = true));
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && !aborted) {
    if (await check()) return true;
    await sleep(100);
  }
  return false;
}

