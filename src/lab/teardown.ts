// Removing labs: by name from the recorded state, and by what is found on the
// machine (namespaces, processes inside them, temp dirs), so a lab whose
// builder crashed half-way is removed just as completely.
import { existsSync } from 'node:fs';
import { readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { mapLimited, runCommand } from './command.js';
import { runCni } from './cni.js';
import { terminate } from '../core/process.js';
import { isLabProcess, readLabState, recordedLabNames, stateDir } from './state.js';
import { labNsPrefix, labOfNs } from './topology.js';

const NETNS_DIR = '/run/netns';

/** Prefix of every lab temp dir under the system temp dir. */
export function labDirPrefix(name: string): string {
  return `weft-lab-${name}-`;
}

export async function listNetns(): Promise<string[]> {
  try {
    return await readdir(NETNS_DIR);
  } catch {
    return [];
  }
}

async function pidsInNetns(ns: string): Promise<number[]> {
  const r = await runCommand(['ip', 'netns', 'pids', ns], { check: false });
  return r.stdout.split(/\s+/).filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n > 1 && n !== process.pid);
}

async function deleteNamespaces(names: readonly string[]): Promise<void> {
  if (names.length === 0) return;
  // -force: keep going past a namespace someone else removed meanwhile.
  await runCommand(['ip', '-force', '-batch', '-'], { input: names.map((n) => `netns del ${n}`).join('\n') + '\n', check: false });
}

/** Kills every process in `namespaces`, then deletes them (a namespace with a process in it outlives its name). */
export async function removeNamespaces(namespaces: readonly string[], extraPids: readonly number[] = []): Promise<void> {
  const pids = (await mapLimited(namespaces, 8, pidsInNetns)).flat();
  await terminate([...pids, ...extraPids]);
  await deleteNamespaces(namespaces);
}

async function cniDelPods(podsOf: Awaited<ReturnType<typeof readLabState>>, present: Set<string>): Promise<void> {
  if (!podsOf) return;
  const nodeNsOf = new Map(podsOf.nodes.map((n) => [n.name, n.ns]));
  await mapLimited(podsOf.pods, 4, async (pod) => {
    const nodeNs = nodeNsOf.get(pod.node);
    if (!nodeNs || !present.has(nodeNs) || !present.has(pod.ns) || !existsSync(pod.cniConfFile)) return;
    try {
      const conf = JSON.parse(await readFile(pod.cniConfFile, 'utf8')) as Record<string, unknown>;
      await runCni({ command: 'DEL', nodeNs, podNs: pod.ns, conf });
    } catch {
      // the namespace deletion below removes what DEL would have
    }
  });
}

/** Removes lab `name`: its processes, pods (CNI DEL), namespaces, temp dir and state. */
export async function destroyLab(name: string): Promise<void> {
  const state = await readLabState(name);
  const all = await listNetns();
  const namespaces = all.filter((ns) => ns.startsWith(labNsPrefix(name)));
  // Recorded pids are killed only if they are still the lab's (pids get reused).
  const recorded = state ? [state.etcdPid, ...(state.etcdMembers ?? []).map((m) => m.pid), ...state.nodes.map((n) => n.agentPid)] : [];
  const ours = recorded.filter((pid): pid is number => isLabProcess(pid, state!.dir));
  await terminate(ours);
  await cniDelPods(state, new Set(namespaces));
  await removeNamespaces(namespaces);
  if (state && basename(state.dir).startsWith(labDirPrefix(name))) await rm(state.dir, { recursive: true, force: true });
  for (const d of await readdir(tmpdir()).catch(() => [] as string[])) {
    if (d.startsWith(labDirPrefix(name))) await rm(join(tmpdir(), d), { recursive: true, force: true });
  }
  await rm(stateDir(name), { recursive: true, force: true });
}

/** Removes every lab on the machine: recorded ones, every `wl-*` namespace, every lab temp dir. */
export async function destroyAllLabs(): Promise<string[]> {
  const tmpDirs = (await readdir(tmpdir()).catch(() => [] as string[])).filter((d) => d.startsWith('weft-lab-'));
  const names = new Set(await recordedLabNames());
  for (const ns of await listNetns()) {
    const lab = labOfNs(ns);
    if (lab) names.add(lab);
  }
  for (const d of tmpDirs) {
    const m = /^weft-lab-([a-z][a-z0-9]*)-/.exec(d);
    if (m?.[1]) names.add(m[1]);
  }
  for (const name of names) await destroyLab(name);
  // Whatever no lab name explains: stray wl-* namespaces and temp dirs.
  await removeNamespaces((await listNetns()).filter((ns) => ns.startsWith('wl-')));
  for (const d of tmpDirs) await rm(join(tmpdir(), d), { recursive: true, force: true });
  return [...names].sort();
}
