// Running the lab's helper programs (ip, etcdctl, CNI plugins, ping, iperf3),
// optionally inside a network namespace, with captured output and a deadline.
import { spawn } from 'node:child_process';
import { WeftError } from '../errors.js';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CommandOptions {
  /** Network namespace to run in (via `ip netns exec`); the root namespace when absent. */
  netns?: string;
  /** Written to the program's stdin. */
  input?: string;
  env?: NodeJS.ProcessEnv;
  /** Killed (SIGKILL) after this long; default 30 s. */
  timeoutMs?: number;
  /** When false, a non-zero exit is returned instead of thrown. Default true. */
  check?: boolean;
}

/** argv prefixed so that it runs inside `netns`. */
export function inNetns(netns: string | undefined, argv: readonly string[]): string[] {
  return netns ? ['ip', 'netns', 'exec', netns, ...argv] : [...argv];
}

export function runCommand(argv: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
  const full = inNetns(opts.netns, argv);
  const [file, ...args] = full;
  if (!file) throw new Error('runCommand: empty argv');
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(e.code === 'ENOENT' ? new WeftError(`${file} is not installed`, 'run "bash scripts/setup.sh" as root') : e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result = { code: code ?? 128, stdout, stderr };
      if (opts.check !== false && result.code !== 0) {
        const why = signal ? `killed by ${signal}` : `exit ${result.code}`;
        const detail = (result.stderr || result.stdout).trim().split('\n').slice(-2).join(' | ');
        reject(new Error(`${full.join(' ')}: ${why}${detail ? `: ${detail}` : ''}`));
        return;
      }
      resolve(result);
    });
    child.stdin.on('error', () => {}); // the program may exit without reading its input
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs `ip -batch -` (inside `netns` if given): many changes, one process. */
export async function ipBatch(netns: string | undefined, lines: readonly string[]): Promise<void> {
  if (lines.length === 0) return;
  const argv = netns ? ['ip', '-n', netns, '-batch', '-'] : ['ip', '-batch', '-'];
  await runCommand(argv, { input: lines.join('\n') + '\n' });
}

/** Runs `fn` over `items` with at most `limit` in flight; results keep the input order. */
export async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
