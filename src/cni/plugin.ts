// The `weft` CNI plugin: reads the node's subnet.env and delegates to the
// standard `bridge` plugin with weft's own `weft-ipam` (or host-local when
// the config names it), keeping the delegate config each ADD used so DEL can
// undo it after subnet.env is gone. In kube mode it asks the node's agent
// what the pod pins first. It implements CNI 1.1 GC itself: the standard
// plugins it delegates to predate it.
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../core/atomic-write.js';
import { IP } from '../core/cidr.js';
import { pinsSocketPath } from '../ipam/pins-api.js';
import { BRIDGE_NAME, bridgeConf, execPlugin, findPlugin, isObject, WEFT_IPAM, type JsonObject } from './delegate.js';
import { ensureBridgeAddress, routeBorrowed, routePodVia, unrouteBorrowed } from './node-routes.js';
import { CniCode, CniError } from './errors.js';
import {
  checkContainerId, checkIfname, checkVersion, cniCommand, compareVersions, decodeConf, failureOutcome, LATEST, parseCniArgs, peekVersion, podOfCniArgs,
  VALID_ATTACHMENTS_KEY, versionReply, type CniInvocation, type CniOutcome,
} from './protocol.js';
import { readNodeSubnet, type NodeSubnet } from './subnet-env.js';

export { SUPPORTED_VERSIONS } from './protocol.js';
export type { CniInvocation, CniOutcome } from './protocol.js';
export const DEFAULT_SUBNET_FILE = '/run/weft/subnet.env';
export const DEFAULT_DATA_DIR = '/var/lib/cni/weft';
const CONF_KEYS = ['cniVersion', 'name', 'type', 'subnetFile', 'dataDir', 'delegate', 'prevResult', 'runtimeConfig', 'args', 'capabilities', 'dns', VALID_ATTACHMENTS_KEY];

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
    const command = cniCommand(call.env);
    if (command === 'VERSION') return { stdout: versionReply(call.stdin), exitCode: 0 };
    const raw = decodeConf(call.stdin);
    const conf = parseWeftNetConf(raw);
    if (command === 'GC') {
      await gc(conf, raw, call.env);
      return { stdout: '', exitCode: 0 };
    }
    const env = checkEnv(command, call.env);
    const stdout = await ACTIONS[command](conf, env, call.env);
    return { stdout, exitCode: 0 };
  } catch (err) {
    return failureOutcome(err, version);
  }
}

const ACTIONS: Record<CniEnv['command'], (conf: WeftNetConf, env: CniEnv, processEnv: NodeJS.ProcessEnv) => Promise<string>> = {
  async ADD(conf, env, processEnv) {
    const node = readNodeSubnet(conf.subnetFile);
    const delegate = withPassThrough(bridgeConf(delegateBase(conf), node, conf.delegate), conf.raw, false);
    const borrowed = await addPins(conf, delegate, node, processEnv);
    const bridge = findPlugin('bridge', env.cniPath);
    // Saved before running the delegate: if ADD fails halfway, the runtime's
    // DEL still knows what to undo (the borrowed route included).
    saveDelegate(conf.dataDir, env, borrowed.length ? { ...delegate, [BORROWED_KEY]: borrowed } : delegate);
    const out = await execPlugin(bridge, 'ADD', delegate, processEnv);
    if (!borrowed.length) return inVersion(out, conf.cniVersion);
    const result = await wireBorrowed(delegate, node, borrowed, env, out);
    await (await import('./pins-client.js')).requestSync(pinsSocketPath(conf.subnetFile));
    return JSON.stringify({ ...result, cniVersion: conf.cniVersion }) + '\n';
  },

  async CHECK(conf, env, processEnv) {
    if (compareVersions(conf.cniVersion, '0.4.0') < 0) {
      throw new CniError(CniCode.incompatibleVersion, `CHECK needs cniVersion 0.4.0 or later, got ${conf.cniVersion}`);
    }
    const record = loadDelegate(conf.dataDir, env);
    if (!record) throw new CniError(CniCode.unknownContainer, `no weft network for container ${env.containerId} interface ${env.ifname}`);
    const node = readNodeSubnet(conf.subnetFile);
    const savedSubnet = subnetOf(record.conf);
    if (savedSubnet !== node.subnet.toString()) {
      throw new CniError(CniCode.staleSubnet, `pod was given an address in ${savedSubnet}, but this node's subnet is now ${node.subnet}`, 'delete the pod so it is recreated');
    }
    const delegate = withPassThrough({ ...record.conf, cniVersion: delegateVersion(conf.cniVersion) }, conf.raw, true);
    await execPlugin(findPlugin('bridge', env.cniPath), 'CHECK', delegate, processEnv);
    return '';
  },

  async DEL(conf, env, processEnv) {
    let record = loadDelegate(conf.dataDir, env);
    if (!record) {
      // Nothing recorded (ADD never got that far, or the record was lost):
      // rebuild from subnet.env if it is there, else there is nothing to undo.
      try {
        record = { conf: bridgeConf(delegateBase(conf), readNodeSubnet(conf.subnetFile), conf.delegate), borrowed: [] };
      } catch {
        return '';
      }
    }
    const delegate = withPassThrough({ ...record.conf, cniVersion: delegateVersion(conf.cniVersion), name: conf.name }, conf.raw, true);
    await execPlugin(findPlugin('bridge', env.cniPath), 'DEL', delegate, processEnv);
    for (const address of record.borrowed) await unrouteBorrowed(bridgeOf(record.conf), address);
    removeDelegate(conf.dataDir, env);
    if (record.borrowed.length) await (await import('./pins-client.js')).requestSync(pinsSocketPath(conf.subnetFile));
    return '';
  },
};

function familyOf(cidr: string): number | undefined {
  try {
    return IP.parse(cidr.split('/')[0]!).family;
  } catch {
    return undefined;
  }
}

function bridgeOf(conf: JsonObject): string {
  return typeof conf.bridge === 'string' ? conf.bridge : BRIDGE_NAME;
}

/** The record key holding the borrowed addresses an ADD routed, so DEL and GC unroute them without the agent. */
const BORROWED_KEY = 'weftBorrowed';

/** The newest version Debian's bridge 1.1.1 speaks; a 1.1.0 caller's config goes to it as 1.0.0 (the result's shape is the same). */
const BRIDGE_MAX_VERSION = '1.0.0';

function delegateVersion(v: string): string {
  return compareVersions(v, BRIDGE_MAX_VERSION) > 0 ? BRIDGE_MAX_VERSION : v;
}

function delegateBase(conf: WeftNetConf): { cniVersion: string; name: string } {
  return { cniVersion: delegateVersion(conf.cniVersion), name: conf.name };
}

/** The delegate's result in the caller's version (only the version field differs between 1.0.0 and 1.1.0). */
function inVersion(out: string, version: string): string {
  if (delegateVersion(version) === version) return out;
  try {
    const doc: unknown = JSON.parse(out);
    return isObject(doc) ? JSON.stringify({ ...doc, cniVersion: version }) + '\n' : out;
  } catch {
    return out;
  }
}

/**
 * Kube mode (kubelet named the pod and the agent's socket is there): asks the
 * agent what the pod pins and puts it into the weft-ipam config, the MAC
 * also into the bridge's runtimeConfig (bridge 1.1.1 sets it on the pod's
 * interface). Returns the pinned addresses outside this node's subnets: the
 * borrowed ones, for which the bridge must not set gateways itself (it
 * would take the /32's mask).
 */
async function addPins(conf: WeftNetConf, delegate: JsonObject, node: NodeSubnet, processEnv: NodeJS.ProcessEnv): Promise<string[]> {
  const ipam = delegate.ipam as JsonObject;
  if (ipam.type !== WEFT_IPAM) return [];
  const pod = podOfCniArgs(parseCniArgs(processEnv.CNI_ARGS));
  const socket = pinsSocketPath(conf.subnetFile);
  if (!pod || !existsSync(socket)) return [];
  // Loaded only in kube mode: every plugin start counts when a node wires many pods at once.
  const { askPodPins } = await import('./pins-client.js');
  const pins = await askPodPins(socket, pod);
  if (!pins) return [];
  ipam.pod = { namespace: pod.namespace, name: pod.name, uid: pins.uid };
  if (pins.addresses.length) ipam.requested = pins.addresses;
  if (pins.mac) {
    ipam.mac = pins.mac;
    delegate.runtimeConfig = { ...(isObject(delegate.runtimeConfig) ? delegate.runtimeConfig : {}), mac: pins.mac };
  }
  const subnets = [node.subnet, ...(node.ipv6 ? [node.ipv6.subnet] : [])];
  const borrowed = pins.addresses.filter((a) => {
    try {
      const ip = IP.parse(a);
      return !subnets.some((s) => s.contains(ip));
    } catch {
      return false; // weft-ipam refuses it, naming it
    }
  });
  if (borrowed.length) delegate.isGateway = false;
  return borrowed;
}

/**
 * What the bridge plugin cannot do for a borrowed address: the gateway
 * address on the bridge (it was told isGateway false), the node's route to
 * the pod (the lender's subnet is routed elsewhere), and the pod's routes
 * through its on-link gateway. Returns the result with those routes in it.
 */
async function wireBorrowed(delegate: JsonObject, node: NodeSubnet, borrowed: string[], env: CniEnv, out: string): Promise<JsonObject> {
  let result: JsonObject;
  try {
    const doc: unknown = JSON.parse(out);
    if (!isObject(doc)) throw new Error('not an object');
    result = doc;
  } catch {
    throw new CniError(CniCode.delegateFailed, 'the bridge plugin printed no readable result', out.slice(0, 200));
  }
  const br = bridgeOf(delegate);
  const ipam = delegate.ipam as JsonObject;
  // weft-ipam checked these routes before the bridge ran; anything else here is skipped, not guessed at.
  const wanted = (Array.isArray(ipam.routes) ? (ipam.routes as unknown[]) : []).flatMap((r) =>
    isObject(r) && typeof r.dst === 'string' && familyOf(r.dst) ? [{ dst: r.dst, ...(typeof r.gw === 'string' ? { gw: r.gw } : {}) }] : []);
  const added: Array<{ dst: string; gw: string }> = [];
  for (const f of [node, ...(node.ipv6 ? [node.ipv6] : [])]) {
    await ensureBridgeAddress(br, `${f.gateway}/${f.subnet.prefixLen}`);
    if (!borrowed.some((a) => IP.parse(a).family === f.subnet.family)) continue;
    const routes = wanted.filter((r) => familyOf(r.dst) === f.subnet.family);
    await routePodVia(env.netns, env.ifname, f.gateway.toString(), routes);
    added.push(...routes.map((r) => ({ dst: r.dst, gw: r.gw ?? f.gateway.toString() })));
  }
  for (const address of borrowed) await routeBorrowed(br, address);
  return { ...result, routes: [...(Array.isArray(result.routes) ? result.routes : []), ...added] };
}

/**
 * CNI 1.1 GC, which Debian's plugins 1.1.1 do not know: drops the saved
 * records (and borrowed routes) of attachments not in the runtime's list,
 * then has weft-ipam free their addresses. The bridge plugin is never called:
 * it has no GC, and the runtime's DEL already removed what it wired.
 */
async function gc(conf: WeftNetConf, raw: JsonObject, processEnv: NodeJS.ProcessEnv): Promise<void> {
  if (compareVersions(conf.cniVersion, '1.1.0') < 0) throw new CniError(CniCode.incompatibleVersion, `GC needs cniVersion 1.1.0 or later, got ${conf.cniVersion}`);
  const cniPath = processEnv.CNI_PATH;
  if (!cniPath) throw new CniError(CniCode.invalidEnv, 'required environment variables missing: CNI_PATH');
  const { parseValidAttachments } = await import('./ipam-plugin.js');
  const valid = parseValidAttachments(raw);
  const keep = new Set(valid.map((a) => recordName(a.containerID, a.ifname)));
  let ipam: JsonObject | undefined;
  try {
    ipam = bridgeConf(delegateBase(conf), readNodeSubnet(conf.subnetFile), conf.delegate).ipam as JsonObject;
  } catch {
    // No subnet.env: the records still say which IPAM the pods used.
  }
  for (const file of listRecords(conf.dataDir)) {
    const record = readRecord(join(conf.dataDir, file));
    if (record && !ipam && isObject(record.conf.ipam)) ipam = record.conf.ipam;
    if (keep.has(file)) continue;
    if (record) for (const address of record.borrowed) await unrouteBorrowed(bridgeOf(record.conf), address);
    rmSync(join(conf.dataDir, file), { force: true });
  }
  if (!ipam || ipam.type !== WEFT_IPAM) return;
  const gcConf = { cniVersion: conf.cniVersion, name: conf.name, ipam, [VALID_ATTACHMENTS_KEY]: valid };
  await execPlugin(findPlugin(WEFT_IPAM, cniPath), 'GC', gcConf, processEnv);
}

/** The plugin's network config from stdin, checked; throws CniError. */
export function parseWeftNetConf(raw: JsonObject): WeftNetConf {
  const v = checkVersion(raw.cniVersion);
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

function checkEnv(command: CniEnv['command'], env: NodeJS.ProcessEnv): CniEnv {
  const required = ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH', ...(command === 'DEL' ? [] : ['CNI_NETNS'])];
  const missing = required.filter((k) => !env[k]);
  if (missing.length) throw new CniError(CniCode.invalidEnv, `required environment variables missing: ${missing.join(', ')}`);
  const containerId = env.CNI_CONTAINERID as string;
  const ifname = env.CNI_IFNAME as string;
  checkContainerId(containerId);
  checkIfname(ifname);
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

function recordName(containerId: string, ifname: string): string {
  return `${containerId}-${ifname}.json`;
}

function recordPath(dataDir: string, env: CniEnv): string {
  return join(dataDir, recordName(env.containerId, env.ifname));
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

/** A saved record: the bridge config ADD used, and the borrowed addresses it routed. */
interface DelegateRecord {
  conf: JsonObject;
  borrowed: string[];
}

function readRecord(path: string): DelegateRecord | undefined {
  try {
    const doc: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (!isObject(doc) || doc.type !== 'bridge') return undefined;
    const { [BORROWED_KEY]: borrowed, ...conf } = doc;
    const addresses = Array.isArray(borrowed) ? borrowed.filter((a): a is string => typeof a === 'string' && isAddress(a)) : [];
    return { conf, borrowed: addresses };
  } catch {
    return undefined;
  }
}

function isAddress(text: string): boolean {
  try {
    IP.parse(text);
    return true;
  } catch {
    return false;
  }
}

function loadDelegate(dataDir: string, env: CniEnv): DelegateRecord | undefined {
  return readRecord(recordPath(dataDir, env));
}

/** The saved records' file names; none when the directory is not there yet. */
function listRecords(dataDir: string): string[] {
  try {
    return readdirSync(dataDir).filter((f) => f.endsWith('.json') && !f.startsWith('.'));
  } catch {
    return [];
  }
}

function removeDelegate(dataDir: string, env: CniEnv): void {
  rmSync(recordPath(dataDir, env), { force: true });
}
