// The `weft` CNI plugin: reads the node's subnet.env and delegates to the
// standard `bridge` + `host-local` plugins, keeping the delegate config each
// ADD used so DEL can undo it after subnet.env is gone.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../core/atomic-write.js';
import { bridgeConf, execPlugin, findPlugin, isObject, type JsonObject } from './delegate.js';
import { CniCode, CniError, DelegateError } from './errors.js';
import { readNodeSubnet } from './subnet-env.js';

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] as const;
const LATEST = '1.0.0';
export const DEFAULT_SUBNET_FILE = '/run/weft/subnet.env';
export const DEFAULT_DATA_DIR = '/var/lib/cni/weft';
const CONF_KEYS = ['cniVersion', 'name', 'type', 'subnetFile', 'dataDir', 'delegate', 'prevResult', 'runtimeConfig', 'args', 'capabilities', 'dns'];
const MAX_STDIN = 1 << 20;

export interface CniInvocation {
  env: NodeJS.ProcessEnv;
  stdin: string;
}

export interface CniOutcome {
  stdout: string;
  exitCode: number;
}

/** The plugin's network config (stdin), checked. */
export interface WeftNetConf {
  cniVersion: string;
  name: string;
  subnetFile: string;
  dataDir: string;
  delegate: JsonObject;
  raw: JsonObject;
}

interface CniEnv {
  command: 'ADD' | 'DEL' | 'CHECK';
  containerId: string;
  netns: string;
  ifname: string;
  cniPath: string;
}

/** Runs one CNI command; never throws: failures become CNI error JSON. */
export async function runCni(call: CniInvocation): Promise<CniOutcome> {
  // Errors answer in the caller's version when it is one weft speaks.
  let version = peekVersion(call.stdin) ?? LATEST;
  try {
    const command = call.env.CNI_COMMAND;
    if (command === 'VERSION') return { stdout: versionReply(call.stdin), exitCode: 0 };
    if (command !== 'ADD' && command !== 'DEL' && command !== 'CHECK') {
      throw new CniError(
        CniCode.invalidEnv,
        command ? `unknown CNI_COMMAND "${command.slice(0, 32)}"` : 'CNI_COMMAND is not set',
        'expected ADD, DEL, CHECK or VERSION',
      );
    }
    const raw = decodeConf(call.stdin);
    const conf = parseWeftNetConf(raw);
    const env = checkEnv(command, call.env);
    const stdout = await ACTIONS[command](conf, env, call.env);
    return { stdout, exitCode: 0 };
  } catch (err) {
    if (err instanceof DelegateError) return { stdout: err.output, exitCode: 1 };
    const e = err instanceof CniError ? err : new CniError(999, `internal error: ${(err as Error)?.message ?? String(err)}`);
    return { stdout: JSON.stringify(e.toJSON(version)) + '\n', exitCode: 1 };
  }
}

const ACTIONS: Record<CniEnv['command'], (conf: WeftNetConf, env: CniEnv, processEnv: NodeJS.ProcessEnv) => Promise<string>> = {
  async ADD(conf, env, processEnv) {
    const node = readNodeSubnet(conf.subnetFile);
    const delegate = withPassThrough(bridgeConf(conf, node, conf.delegate), conf.raw, false);
    const bridge = findPlugin('bridge', env.cniPath);
    // Saved before running the delegate: if ADD fails halfway, the runtime's
    // DEL still knows what to undo.
    saveDelegate(conf.dataDir, env, delegate);
    return execPlugin(bridge, 'ADD', delegate, processEnv);
  },

  async CHECK(conf, env, processEnv) {
    if (compareVersions(conf.cniVersion, '0.4.0') < 0) {
      throw new CniError(CniCode.incompatibleVersion, `CHECK needs cniVersion 0.4.0 or later, got ${conf.cniVersion}`);
    }
    const saved = loadDelegate(conf.dataDir, env);
    if (!saved) throw new CniError(CniCode.unknownContainer, `no weft network for container ${env.containerId} interface ${env.ifname}`);
    const node = readNodeSubnet(conf.subnetFile);
    const savedSubnet = subnetOf(saved);
    if (savedSubnet !== node.subnet.toString()) {
      throw new CniError(CniCode.staleSubnet, `pod was given an address in ${savedSubnet}, but this node's subnet is now ${node.subnet}`, 'delete the pod so it is recreated');
    }
    const delegate = withPassThrough({ ...saved, cniVersion: conf.cniVersion }, conf.raw, true);
    await execPlugin(findPlugin('bridge', env.cniPath), 'CHECK', delegate, processEnv);
    return '';
  },

  async DEL(conf, env, processEnv) {
    let saved = loadDelegate(conf.dataDir, env);
    if (!saved) {
      // Nothing recorded (ADD never got that far, or the record was lost):
      // rebuild from subnet.env if it is there, else there is nothing to undo.
      try {
        saved = bridgeConf(conf, readNodeSubnet(conf.subnetFile), conf.delegate);
      } catch {
        return '';
      }
    }
    const delegate = withPassThrough({ ...saved, cniVersion: conf.cniVersion, name: conf.name }, conf.raw, true);
    await execPlugin(findPlugin('bridge', env.cniPath), 'DEL', delegate, processEnv);
    removeDelegate(conf.dataDir, env);
    return '';
  },
};

function versionReply(stdin: string): string {
  return JSON.stringify({ cniVersion: peekVersion(stdin) ?? LATEST, supportedVersions: SUPPORTED_VERSIONS }) + '\n';
}

/** The config's cniVersion if stdin parses and names a supported one. */
function peekVersion(stdin: string): string | undefined {
  try {
    const v: unknown = stdin.length <= MAX_STDIN && stdin.trim() ? (JSON.parse(stdin) as JsonObject)?.cniVersion : undefined;
    return typeof v === 'string' && isSupported(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

function isSupported(v: string): boolean {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function decodeConf(stdin: string): JsonObject {
  if (stdin.length > MAX_STDIN) throw new CniError(CniCode.decodeFailure, `network config on stdin is larger than ${MAX_STDIN} bytes`);
  let doc: unknown;
  try {
    doc = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(CniCode.decodeFailure, `network config on stdin is not JSON (${(err as Error).message.slice(0, 100)})`);
  }
  if (!isObject(doc)) throw new CniError(CniCode.decodeFailure, 'network config on stdin is not a JSON object');
  return doc;
}

/** The plugin's network config from stdin, checked; throws CniError. */
export function parseWeftNetConf(raw: JsonObject): WeftNetConf {
  const v = raw.cniVersion;
  if (typeof v !== 'string' || !isSupported(v)) {
    const shown = typeof v === 'string' ? `"${v.slice(0, 16)}"` : v === undefined ? 'missing' : 'not a string';
    throw new CniError(CniCode.incompatibleVersion, `cniVersion ${shown} is not supported`, `supported: ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  if (typeof raw.name !== 'string' || raw.name === '') throw new CniError(CniCode.invalidConfig, 'network config has no "name"');
  const optionalPath = (key: 'subnetFile' | 'dataDir', fallback: string): string => {
    const p = raw[key];
    if (p === undefined) return fallback;
    if (typeof p !== 'string' || !p.startsWith('/')) throw new CniError(CniCode.invalidConfig, `"${key}" must be an absolute path`);
    return p;
  };
  const delegate = raw.delegate ?? {};
  if (!isObject(delegate)) throw new CniError(CniCode.invalidConfig, '"delegate" must be an object');
  if (delegate.type !== undefined && delegate.type !== 'bridge') {
    throw new CniError(CniCode.unsupportedField, '"delegate.type" cannot be changed: weft delegates to bridge');
  }
  if (delegate.ipam !== undefined && !isObject(delegate.ipam)) throw new CniError(CniCode.invalidConfig, '"delegate.ipam" must be an object');
  for (const key of Object.keys(raw)) {
    if (!CONF_KEYS.includes(key)) throw new CniError(CniCode.unsupportedField, `unknown key "${key.slice(0, 32)}" in the weft network config`);
  }
  return {
    cniVersion: v,
    name: raw.name,
    subnetFile: optionalPath('subnetFile', DEFAULT_SUBNET_FILE),
    dataDir: optionalPath('dataDir', DEFAULT_DATA_DIR),
    delegate,
    raw,
  };
}

// The spec's rules for container ids and interface names; they also keep the
// saved-config file name inside dataDir.
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const IFNAME = /^[^\s/:]{1,15}$/;

function checkEnv(command: CniEnv['command'], env: NodeJS.ProcessEnv): CniEnv {
  const required = ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH', ...(command === 'DEL' ? [] : ['CNI_NETNS'])];
  const missing = required.filter((k) => !env[k]);
  if (missing.length) throw new CniError(CniCode.invalidEnv, `required environment variables missing: ${missing.join(', ')}`);
  const containerId = env.CNI_CONTAINERID as string;
  const ifname = env.CNI_IFNAME as string;
  if (!CONTAINER_ID.test(containerId) || containerId.length > 256) {
    throw new CniError(CniCode.invalidEnv, `CNI_CONTAINERID "${containerId.slice(0, 64)}" is not a valid container id`);
  }
  if (!IFNAME.test(ifname) || ifname === '.' || ifname === '..') {
    throw new CniError(CniCode.invalidEnv, `CNI_IFNAME "${ifname.slice(0, 32)}" is not a valid interface name`);
  }
  return { command, containerId, ifname, netns: env.CNI_NETNS ?? '', cniPath: env.CNI_PATH as string };
}

/** Keys the runtime sets per call that the delegate must see too. */
function withPassThrough(delegate: JsonObject, raw: JsonObject, withPrevResult: boolean): JsonObject {
  const out = { ...delegate };
  for (const key of ['runtimeConfig', 'args'] as const) if (raw[key] !== undefined) out[key] = raw[key];
  if (withPrevResult && raw.prevResult !== undefined) out.prevResult = raw.prevResult;
  else delete out.prevResult;
  return out;
}

function subnetOf(conf: JsonObject): string | undefined {
  const ipam = conf.ipam;
  if (!isObject(ipam) || !Array.isArray(ipam.ranges)) return undefined;
  const first: unknown = (ipam.ranges as unknown[][])[0]?.[0];
  return isObject(first) && typeof first.subnet === 'string' ? first.subnet : undefined;
}

function recordPath(dataDir: string, env: CniEnv): string {
  return join(dataDir, `${env.containerId}-${env.ifname}.json`);
}

function saveDelegate(dataDir: string, env: CniEnv, conf: JsonObject): void {
  const path = recordPath(dataDir, env);
  try {
    const { runtimeConfig: _r, args: _a, ...kept } = conf;
    writeFileAtomicSync(path, JSON.stringify(kept), { mode: 0o600, dirMode: 0o700 });
  } catch (err) {
    throw new CniError(CniCode.ioFailure, `cannot save the delegate config in ${dataDir} (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
}

function loadDelegate(dataDir: string, env: CniEnv): JsonObject | undefined {
  try {
    const doc: unknown = JSON.parse(readFileSync(recordPath(dataDir, env), 'utf8'));
    return isObject(doc) && doc.type === 'bridge' ? doc : undefined;
  } catch {
    return undefined;
  }
}

function removeDelegate(dataDir: string, env: CniEnv): void {
  rmSync(recordPath(dataDir, env), { force: true });
}
