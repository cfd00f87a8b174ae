// The standard plugins weft delegates to: the network config it hands the
// `bridge` plugin (with weft's own `weft-ipam`, or `host-local` when the
// user's config names it), and running a plugin from CNI_PATH.
import { spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { join } from 'node:path';
import { CniCode, CniError, DelegateError } from './errors.js';
import type { NodeSubnet } from './subnet-env.js';

export type JsonObject = Record<string, unknown>;

export const BRIDGE_NAME = 'cni0';

/** weft's IPAM plugin (src/cni/ipam-plugin.ts), installed beside the `weft` plugin. */
export const WEFT_IPAM = 'weft-ipam';

/**
 * The bridge plugin's config for a pod on this node, as flannel's plugin
 * builds it: the node subnet via weft-ipam (and the IPv6 one on a
 * dual-stack node), the bridge as gateway, routes to the cluster Network
 * and the default route in each family. weft-ipam also gets the cluster
 * Network(s), so a pinned address of another node's subnet can be borrowed.
 * `overrides` (the net conf's `delegate` object) replaces top-level keys and
 * merges into `ipam`; an `ipam.type` other than weft-ipam (host-local) gets
 * exactly the ranges and routes, as before weft had its own IPAM.
 */
export function bridgeConf(base: { cniVersion: string; name: string }, node: NodeSubnet, overrides: JsonObject = {}): JsonObject {
  // A dual-stack node gives each pod one address of each family: two ranges, routes in both.
  const families = [node, ...(node.ipv6 ? [node.ipv6] : [])];
  const { ipam: ipamOverrides, ...rest } = overrides;
  const type = isObject(ipamOverrides) && ipamOverrides.type !== undefined ? ipamOverrides.type : WEFT_IPAM;
  const ipam: JsonObject = {
    type,
    ranges: families.map((f) => [{ subnet: f.subnet.toString(), gateway: f.gateway.toString() }]),
    // An explicit gw: the bridge plugin's CHECK compares routes literally.
    routes: families.flatMap((f) =>
      [f.network.toString(), f.network.family === 4 ? '0.0.0.0/0' : '::/0'].map((dst) => ({ dst, gw: f.gateway.toString() }))),
    ...(type === WEFT_IPAM ? { networks: families.map((f) => f.network.toString()) } : {}),
  };
  return {
    cniVersion: base.cniVersion,
    name: base.name,
    type: 'bridge',
    bridge: BRIDGE_NAME,
    isGateway: true,
    // The agent masquerades traffic leaving the cluster when FLANNEL_IPMASQ is
    // true; the bridge plugin doing it too would NAT pod-to-pod traffic.
    ipMasq: !node.ipMasq,
    mtu: node.mtu,
    hairpinMode: true,
    ...rest,
    ipam: { ...ipam, ...(isObject(ipamOverrides) ? ipamOverrides : {}) },
  };
}

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The first executable `name` in the colon-separated CNI_PATH. */
export function findPlugin(name: string, cniPath: string): string {
  for (const dir of cniPath.split(':').filter(Boolean)) {
    const file = join(dir, name);
    try {
      if (statSync(file).isFile()) {
        accessSync(file, constants.X_OK);
        return file;
      }
    } catch {
      // not here; try the next directory
    }
  }
  throw new CniError(
    CniCode.delegateMissing,
    `CNI plugin "${name}" not found in CNI_PATH ${cniPath}`,
    name === WEFT_IPAM
      ? 'install weft-ipam beside the weft plugin (the weft DaemonSet does), or set "delegate": {"ipam": {"type": "host-local"}}'
      : 'install the standard CNI plugins (bridge, host-local) into the CNI bin directory',
  );
}

/**
 * Runs a delegate with this process's CNI environment and `command`, `conf` on
 * stdin. Resolves with its stdout on success; a failure that printed a CNI
 * error becomes DelegateError (passed through as is), anything else CniError.
 */
export function execPlugin(path: string, command: string, conf: JsonObject, env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(path, [], { env: { ...env, CNI_COMMAND: command }, stdio: ['pipe', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => (stdout += s));
    child.on('error', (err) => reject(new CniError(CniCode.delegateFailed, `cannot run ${path}: ${err.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) return resolve(stdout);
      if (looksLikeCniError(stdout)) return reject(new DelegateError(stdout));
      const how = signal ? `was killed by ${signal}` : `exited with ${code}`;
      reject(new CniError(CniCode.delegateFailed, `${path} ${command} ${how}`, stdout.slice(0, 512)));
    });
    child.stdin.on('error', () => {
      // The plugin may exit before reading stdin; its exit status tells.
    });
    child.stdin.end(JSON.stringify(conf));
  });
}

function looksLikeCniError(text: string): boolean {
  try {
    const v: unknown = JSON.parse(text);
    return isObject(v) && typeof v.code === 'number' && typeof v.msg === 'string';
  } catch {
    return false;
  }
}
