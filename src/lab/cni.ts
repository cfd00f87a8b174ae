// Pods wired exactly as kubelet would wire them: weft's own CNI plugin (the
// `weft` type, run from a launcher in the lab dir), which reads the node's
// subnet.env and delegates to Debian's standard `bridge` with weft's
// `weft-ipam` (a launcher beside it), run inside the node's namespace. A pod is a namespace wired by CNI ADD and
// unwired by CNI DEL with the config saved at ADD.
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../errors.js';
import { writeFileAtomic } from '../core/atomic-write.js';
import { packageRoot } from '../core/package-root.js';
import { IP } from '../core/cidr.js';
import { ipBatch, runCommand } from './command.js';

/** Debian's standard plugins (containernetworking-plugins): weft's delegates. */
export const CNI_PATH = '/usr/lib/cni';

/** The lab's own CNI bin dir, holding the `weft` and `weft-ipam` launchers. */
export function labCniBinDir(labDir: string): string {
  return join(labDir, 'cni-bin');
}

/**
 * The `weft` plugin's network config for a node's pods; its state (the saved
 * delegate config, weft-ipam's store) stays in the node's lab dir.
 */
export function weftConf(nodeDir: string): Record<string, unknown> {
  return {
    // 1.1.0, as a current runtime: the plugin speaks it (GC included) and hands the bridge 1.0.0.
    cniVersion: '1.1.0',
    name: 'weft',
    type: 'weft',
    subnetFile: join(nodeDir, 'subnet.env'),
    dataDir: join(nodeDir, 'cni'),
    // Pod-to-pod traffic keeps its source address (the lab's tests look at
    // it); the agent masquerades traffic leaving the cluster when --ip-masq.
    delegate: { ipMasq: false, ipam: { dataDir: labIpamDir(nodeDir) } },
  };
}

/** Where a lab node's weft-ipam keeps its store (one state.json per network under it). */
export function labIpamDir(nodeDir: string): string {
  return join(nodeDir, 'weft-ipam');
}

/**
 * Writes `<binDir>/<name>`, a launcher running a built plugin with this node
 * binary. Replaced by rename, so a plugin running meanwhile never reads a half-written script.
 */
export async function writeCniLauncher(binDir: string, name: string, pluginEntry: string): Promise<void> {
  const file = join(binDir, name);
  const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const text = `#!/bin/sh\nexec ${quote(process.execPath)} ${quote(pluginEntry)} "$@"\n`;
  if (existsSync(file) && readFileSync(file, 'utf8') === text) return;
  await writeFileAtomic(file, text, { mode: 0o755 });
}

/**
 * Where a config's plugin lives: a `weft` config's launcher is in its lab's
 * bin dir (found from the subnet file, <lab dir>/<node>/subnet.env); labs
 * from before the switch saved plain `bridge` configs.
 */
function pluginDirOf(conf: Record<string, unknown>): string {
  if (conf.type !== 'weft' || typeof conf.subnetFile !== 'string') return CNI_PATH;
  return labCniBinDir(dirname(dirname(conf.subnetFile)));
}

export interface CniCall {
  command: 'ADD' | 'DEL';
  /** Namespace the plugin runs in: the node's. */
  nodeNs: string;
  /** The pod's namespace name (also used as the container id). */
  podNs: string;
  conf: Record<string, unknown>;
}

/** Runs the plugin; for ADD returns the pod's addresses (CIDR form, e.g. "10.244.3.2/24"), one per family. */
export async function runCni(call: CniCall): Promise<string[]> {
  const type = String(call.conf.type);
  const pluginDir = pluginDirOf(call.conf);
  const result = await runCommand([join(pluginDir, type)], {
    netns: call.nodeNs,
    input: JSON.stringify(call.conf),
    check: false,
    env: {
      CNI_COMMAND: call.command,
      CNI_CONTAINERID: call.podNs,
      CNI_NETNS: `/var/run/netns/${call.podNs}`,
      CNI_IFNAME: 'eth0',
      CNI_PATH: pluginDir === CNI_PATH ? CNI_PATH : `${pluginDir}:${CNI_PATH}`,
    },
  });
  if (result.code !== 0) {
    let msg = (result.stderr || result.stdout).trim();
    try {
      const err = JSON.parse(result.stdout) as { msg?: string; details?: string };
      msg = [err.msg, err.details].filter(Boolean).join(': ') || msg;
    } catch {
      // not a CNI error object
    }
    throw new Error(`CNI ${type} ${call.command} for ${call.podNs} failed: ${msg}`);
  }
  if (call.command === 'DEL') return [];
  const parsed = JSON.parse(result.stdout) as { ips?: Array<{ address?: string }> };
  const addresses = (parsed.ips ?? []).map((ip) => ip.address).filter((a): a is string => typeof a === 'string' && a !== '');
  if (addresses.length === 0) throw new Error(`CNI ${type} ADD for ${call.podNs} returned no address`);
  return addresses;
}

/** The built CNI plugins the lab's launchers run: `weft` and `weft-ipam`. */
const PLUGIN_ENTRIES = { weft: 'main.js', 'weft-ipam': 'ipam-main.js' } as const;

function cniPluginEntry(file: string): string {
  const entry = join(packageRoot(), 'dist', 'src', 'cni', file);
  if (!existsSync(entry)) throw new WeftError(`the weft CNI plugin is not built (${entry} is missing)`, 'run "npm run build"');
  return entry;
}

/** The lab's `weft` and `weft-ipam` launchers, in labCniBinDir. */
export async function writeCniLaunchers(labDir: string): Promise<void> {
  for (const [name, file] of Object.entries(PLUGIN_ENTRIES)) await writeCniLauncher(labCniBinDir(labDir), name, cniPluginEntry(file));
}

/**
 * Writes what CNI ADD for a pod of this node needs: the lab's launcher, and
 * the pod's network config in `confFile` (kept for DEL). Returns the config.
 */
export async function writePodConf(labDir: string, nodeDir: string, confFile: string): Promise<Record<string, unknown>> {
  await writeCniLaunchers(labDir);
  const conf = weftConf(nodeDir);
  await writeFile(confFile, JSON.stringify(conf, null, 2) + '\n');
  return conf;
}

/**
 * CNI 1.1 GC, as a runtime calls it: the node's `weft` config with the
 * attachments (container id, ifname) that are still there; the plugin frees
 * everything else. `conf` is the node's weftConf.
 */
export async function runCniGc(nodeNs: string, conf: Record<string, unknown>, valid: Array<{ containerID: string; ifname: string }>): Promise<void> {
  const pluginDir = pluginDirOf(conf);
  const result = await runCommand([join(pluginDir, 'weft')], {
    netns: nodeNs,
    input: JSON.stringify({ ...conf, 'cni.dev/valid-attachments': valid }),
    check: false,
    env: { CNI_COMMAND: 'GC', CNI_PATH: `${pluginDir}:${CNI_PATH}` },
  });
  if (result.code !== 0) {
    let msg = (result.stderr || result.stdout).trim();
    try {
      msg = (JSON.parse(result.stdout) as { msg?: string }).msg ?? msg;
    } catch {
      // not a CNI error object
    }
    throw new Error(`CNI weft GC in ${nodeNs} failed: ${msg}`);
  }
}

/** Creates the pod's namespace and runs CNI ADD for it in the node's namespace; returns the pod's IPs (one per family). */
export async function wirePod(nodeNs: string, podNs: string, conf: Record<string, unknown>): Promise<IP[]> {
  await runCommand(['ip', 'netns', 'add', podNs]);
  await ipBatch(podNs, ['link set lo up']);
  const addresses = (await runCni({ command: 'ADD', nodeNs, podNs, conf })).map((a) => IP.parse(a.split('/')[0] ?? ''));
  if (addresses.some((ip) => ip.family === 6)) await Promise.all([nodeNs, podNs].map((ns) => waitIPv6Settled(ns)));
  return addresses;
}

/**
 * Waits until no IPv6 address in `ns` is tentative: the bridge's new gateway
 * address spends a second or two in duplicate address detection, and until
 * it is done the node drops the pod's IPv6 traffic.
 */
async function waitIPv6Settled(ns: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const tentative = (await runCommand(['ip', '-6', '-o', 'addr', 'show', 'tentative'], { netns: ns })).stdout.trim();
    if (!tentative) return;
    if (Date.now() > deadline) throw new Error(`IPv6 addresses in ${ns} are still tentative after ${timeoutMs / 1000} s: ${tentative.split('\n')[0]}`);
    await sleep(100);
  }
}

/** CNI DEL (when the pod's config and namespace are still there), then removes the pod's namespace. */
export async function unwirePod(nodeNs: string, pod: { ns: string; cniConfFile: string }): Promise<void> {
  if (existsSync(pod.cniConfFile) && existsSync(`/run/netns/${pod.ns}`)) {
    const conf = JSON.parse(await readFile(pod.cniConfFile, 'utf8')) as Record<string, unknown>;
    await runCni({ command: 'DEL', nodeNs, podNs: pod.ns, conf }).catch(() => undefined);
  }
  await runCommand(['ip', 'netns', 'del', pod.ns], { check: false });
}
