// Running a program (ip, bridge, nft, birdc, etcdctl, ...), optionally inside
// a network namespace, with captured output and a deadline. The failures a
// user causes are mapped here, once, to one line naming the cause and the fix:
// a missing program, a missing capability, a namespace that does not exist.
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
  /** Aborting it sends the program SIGINT: how ping is told to print its summary and stop. */
  interrupt?: AbortSignal;
}

/** The Debian package of each program weft runs, for the "install it" fix. */
const PACKAGE: Record<string, string> = {
  ip: 'iproute2', bridge: 'iproute2', tc: 'iproute2', nft: 'nftables', bird: 'bird2', birdc: 'bird2',
  etcd: 'etcd-server', etcdctl: 'etcd-client', ping: 'iputils-ping', iperf3: 'iperf3', gobgp: 'gobgpd', gobgpd: 'gobgpd',
  conntrack: 'conntrack', curl: 'curl', ethtool: 'ethtool', tcpdump: 'tcpdump', sockperf: 'sockperf',
};

export const FIX_CAPABILITY = 'run weft as root or grant it CAP_NET_ADMIN (DaemonSet: securityContext.capabilities.add: [NET_ADMIN], hostNetwork: true)';

/** The Debian package that provides `program`, if weft knows it. */
export function debianPackage(program: string): string | undefined {
  return PACKAGE[program];
}

/** The one-line error for a program that is not installed. */
export function missingProgram(program: string): WeftError {
  const name = program.split('/').pop() ?? program;
  const pkg = debianPackage(name);
  return new WeftError(`the "${name}" command was not found`, pkg ? `install ${pkg} (apt-get install ${pkg})` : `install ${name}`);
}

/**
 * A user-fixable cause in a program's error output (missing program inside a
 * namespace, missing capability, missing namespace), or undefined.
 */
export function userCause(program: string, stderr: string, netns?: string): WeftError | undefined {
  const notFound = /exec of "([^"]+)" failed: No such file/.exec(stderr);
  if (notFound) return missingProgram(notFound[1]!);
  if (/Operation not permitted/i.test(stderr)) return new WeftError(`${program}: Operation not permitted — weft lacks CAP_NET_ADMIN`, FIX_CAPABILITY);
  if (netns && /Cannot open network namespace/i.test(stderr)) {
    return new WeftError(`network namespace "${netns}" does not exist`, 'create it (ip netns add) or drop the netns option');
  }
  return undefined;
}

/** argv prefixed so that it runs inside `netns`. */
export function inNetns(netns: string | undefined, argv: readonly string[]): string[] {
  return netns ? ['ip', 'netns', 'exec', netns, ...argv] : [...argv];
}

/**
 * Runs argv and resolves with its exit code and output. Rejects with a
 * WeftError for a missing program; with `check` (the default) also on a
 * non-zero exit, with the user-fixable cause when there is one.
 */
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
    if (opts.interrupt?.aborted) child.kill('SIGINT');
    else opts.interrupt?.addEventListener('abort', () => child.kill('SIGINT'), { once: true });
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(e.code === 'ENOENT' ? missingProgram(file) : e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result = { code: code ?? 128, stdout, stderr };
      const notFound = opts.netns ? /exec of "([^"]+)" failed: No such file/.exec(stderr) : null;
      if (notFound) {
        reject(missingProgram(notFound[1]!));
        return;
      }
      if (opts.check !== false && result.code !== 0) {
        const cause = userCause(argv[0] ?? file, stderr, opts.netns);
        if (cause) {
          reject(cause);
          return;
        }
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
