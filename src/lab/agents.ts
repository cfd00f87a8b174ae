// A lab node's agent: the `weft agent` command line it runs with inside its
// node's namespace, started detached (it outlives `weft lab up`), waited for
// until /readyz answers, and asked over its health address.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../errors.js';
import { packageRoot } from '../core/package-root.js';
import { isAlive, spawnDetached } from '../core/process.js';
import { runCommand } from './command.js';
import { lastLogLine } from './last-log-line.js';
import { findProgram } from './prereqs.js';
import type { LabNode } from './state.js';
import { labIpamDir } from './cni.js';

/** Every agent listens here inside its own node's namespace, so one address serves all. */
const HEALTHZ = '127.0.0.1:10270';

export function agentEntry(): string {
  return join(packageRoot(), 'dist', 'src', 'cli', 'main.js');
}

export interface AgentLaunch {
  /** The node's namespace, also the agent's --node-name. */
  ns: string;
  /** --etcd-endpoints and, with TLS, the client's files. */
  etcdArgs: readonly string[];
  etcdPrefix: string;
  subnetFile: string;
  /** The node's lab dir; the agent's --run-dir is run/ below it. */
  nodeDir: string;
  logFile: string;
  args: readonly string[];
}

/** Starts the agent detached, output appended to its log; returns its pid and when it started. */
export async function launchAgent(launch: AgentLaunch): Promise<{ pid: number; startedAt: number }> {
  const entry = agentEntry();
  if (!existsSync(entry)) throw new WeftError(`weft is not built (${entry} is missing)`, 'run "npm run build"');
  await mkdir(join(launch.nodeDir, 'run'), { recursive: true });
  const argv = [
    // Without the test runner's NODE_OPTIONS hooks: the agent runs as it would on a node.
    'ip', 'netns', 'exec', launch.ns, 'env', '-u', 'NODE_OPTIONS', process.execPath, entry, 'agent',
    ...launch.etcdArgs,
    '--etcd-prefix', launch.etcdPrefix,
    '--iface', 'eth0',
    '--node-name', launch.ns,
    '--subnet-file', launch.subnetFile,
    '--run-dir', join(launch.nodeDir, 'run'),
    // The node's weft-ipam store, the one the lab's CNI conf gives the plugin.
    '--ipam-dir', labIpamDir(launch.nodeDir),
    '--healthz-addr', HEALTHZ,
    ...launch.args,
  ];
  const startedAt = Date.now();
  return { pid: spawnDetached(argv, launch.logFile), startedAt };
}

/**
 * Waits until the agent has written subnet.env and answers 200 on /readyz.
 * Throws one line from its log when it exits first or `timeoutMs` passes.
 */
export async function waitAgentReady(node: LabNode, files: { subnetFile: string; logFile: string }, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const log = files.logFile;
  for (;;) {
    const pid = node.agentPid;
    if (pid === undefined || !isAlive(pid)) {
      throw new WeftError(`the agent on ${node.ns} exited: ${lastLogLine(log)}`, `see ${log}`);
    }
    if (existsSync(files.subnetFile) && (await agentReady(node.ns))) break;
    if (Date.now() > deadline) {
      throw new WeftError(`the agent on ${node.ns} was not ready after ${Math.round(timeoutMs / 1000)} s: ${lastLogLine(log)}`, `see ${log}`);
    }
    await sleep(100);
  }
}

/** True when the agent in namespace `ns` answers 200 on /readyz. */
export function agentReady(ns: string): Promise<boolean> {
  return httpOk(ns, `http://${HEALTHZ}/readyz`);
}

/** GET `path` (e.g. /readyz, /metrics) from the agent in `ns`: status and body; status 0 when nothing answers. */
export async function agentHttp(ns: string, path: string): Promise<{ status: number; body: string }> {
  const url = `http://${HEALTHZ}${path}`;
  const script = `fetch(${JSON.stringify(url)}).then(async (r) => process.stdout.write(r.status + '\\n' + await r.text()), () => process.stdout.write('0\\n'))`;
  const r = await runCommand([process.execPath, '-e', script], { netns: ns, check: false, timeoutMs: 10_000, env: { ...process.env, NODE_OPTIONS: '' } });
  const nl = r.stdout.indexOf('\n');
  return { status: Number(r.stdout.slice(0, nl)) || 0, body: r.stdout.slice(nl + 1) };
}

/** GET inside a namespace (the lab process itself lives in the root namespace). */
async function httpOk(ns: string, url: string): Promise<boolean> {
  const argv = findProgram('curl')
    ? ['curl', '-fsS', '-o', '/dev/null', '-m', '2', url]
    : [process.execPath, '-e', `fetch(${JSON.stringify(url)}).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))`];
  const r = await runCommand(argv, { netns: ns, check: false, timeoutMs: 5000 });
  return r.code === 0;
}
