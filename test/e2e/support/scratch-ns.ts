// A scratch network namespace for tests that need a real kernel but no lab:
// a veth pair eth0/eth1, both up, 10.99.0.1/24 on eth0.
import { spawnSync } from 'node:child_process';

/** Runs a command; throws with its stderr when it fails (unless `check` is false). */
export function sh(cmd: string, args: string[], opts: { check?: boolean; input?: string } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...(opts.input !== undefined ? { input: opts.input } : {}) });
  if (opts.check !== false && r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Deletes every namespace whose name starts with `prefix`. */
export function removeNamespaces(prefix: string): void {
  for (const ns of sh('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0] ?? '')) {
    if (ns.startsWith(prefix)) spawnSync('ip', ['netns', 'del', ns]);
  }
}

/** Creates `ns` (after removing leftovers named `prefix`*) with eth0/eth1 up and 10.99.0.1/24 on eth0. */
export function createScratchNamespace(ns: string, prefix: string): void {
  removeNamespaces(prefix);
  sh('ip', ['netns', 'add', ns]);
  const ip = (...args: string[]) => sh('ip', ['-n', ns, ...args]);
  ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1');
  ip('link', 'set', 'eth0', 'up');
  ip('link', 'set', 'eth1', 'up');
  ip('addr', 'add', '10.99.0.1/24', 'dev', 'eth0');
}
