// `weft-ipam`, weft's IPAM as a CNI plugin: the bridge plugin runs it as
// `ipam.type: "weft-ipam"`, as it would host-local. Each call is one
// read-modify-write of the node's IPAM store (src/ipam/store.ts) under its
// lock, so concurrent ADDs never hand out one address twice and a plugin
// killed at any instant leaves the old state or the new one.
import { existsSync } from 'node:fs';
import { Cidr, IP } from '../core/cidr.js';
import { WeftError } from '../errors.js';
import { allocate, allocationsOf, gatewayOf, IpamError, release, type Range } from '../ipam/allocator.js';
import { applyGc, decideGc, type Attachment } from '../ipam/gc.js';
import type { Allocation, IpamState, PodRef } from '../ipam/state.js';
import { DEFAULT_IPAM_DIR, storePaths, updateState, type StorePaths } from '../ipam/store.js';
import { isObject, type JsonObject } from './delegate.js';
import { CniCode, CniError } from './errors.js';
import {
  checkContainerId, checkIfname, checkVersion, cniCommand, compareVersions, decodeConf, failureOutcome, LATEST, parseCniArgs, peekVersion, podOfCniArgs,
  VALID_ATTACHMENTS_KEY, versionReply, type CniInvocation, type CniOutcome,
} from './protocol.js';

export const IPAM_TYPE = 'weft-ipam';
const IPAM_KEYS = ['type', 'dataDir', 'ranges', 'routes', 'networks', 'requested', 'mac', 'pod'];
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

export interface IpamRoute {
  dst: string;
  gw?: string;
}

/** The `ipam` object of the network config, checked. */
export interface IpamConf {
  cniVersion: string;
  /** The network's name: one store per network. */
  name: string;
  dataDir: string;
  ranges: Range[];
  routes: IpamRoute[];
  networks: Cidr[];
  requested: IP[];
  mac?: string;
  pod?: PodRef;
}

function invalid(msg: string): CniError {
  return new CniError(CniCode.invalidConfig, msg);
}

function cidrOf(v: unknown, where: string): Cidr {
  if (typeof v !== 'string') throw invalid(`"${where}" must be a CIDR string`);
  try {
    return Cidr.parse(v, { loose: true });
  } catch {
    throw invalid(`"${where}" "${v.slice(0, 64)}" is not a CIDR`);
  }
}

function ipOf(v: unknown, where: string): IP {
  if (typeof v !== 'string') throw invalid(`"${where}" must be an address string`);
  try {
    return IP.parse(v);
  } catch {
    throw invalid(`"${where}" "${v.slice(0, 64)}" is not an IP address`);
  }
}

function listOf(v: unknown, where: string): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw invalid(`"${where}" must be a list`);
  return v as unknown[];
}

/** The ipam config weft-ipam gets from the bridge plugin (the whole network config on stdin); throws CniError. */
export function parseIpamConf(raw: JsonObject): IpamConf {
  const cniVersion = checkVersion(raw.cniVersion);
  if (typeof raw.name !== 'string' || raw.name === '') throw invalid('network config has no "name"');
  const ipam = raw.ipam;
  if (!isObject(ipam)) throw invalid('network config has no "ipam" object');
  for (const key of Object.keys(ipam)) {
    if (!IPAM_KEYS.includes(key)) throw new CniError(CniCode.unsupportedField, `unknown key "ipam.${key.slice(0, 32)}" in the weft-ipam config`, `known keys: ${IPAM_KEYS.join(', ')}`);
  }
  const dataDir = ipam.dataDir ?? DEFAULT_IPAM_DIR;
  if (typeof dataDir !== 'string' || !dataDir.startsWith('/')) throw invalid('"ipam.dataDir" must be an absolute path');
  // host-local's shape: a list of range sets, each a list of ranges.
  const ranges = listOf(ipam.ranges, 'ipam.ranges').flatMap((set, i) =>
    listOf(set, `ipam.ranges[${i}]`).map((r, j): Range => {
      const where = `ipam.ranges[${i}][${j}]`;
      if (!isObject(r)) throw invalid(`"${where}" must be an object`);
      const subnet = cidrOf(r.subnet, `${where}.subnet`);
      if (r.gateway === undefined) return { subnet };
      const gateway = ipOf(r.gateway, `${where}.gateway`);
      if (!subnet.contains(gateway)) throw invalid(`"${where}.gateway" ${gateway} is outside its subnet ${subnet}`);
      return { subnet, gateway };
    }));
  if (ranges.length === 0) throw invalid('"ipam.ranges" names no subnet to allocate from');
  const routes = listOf(ipam.routes, 'ipam.routes').map((r, i): IpamRoute => {
    if (!isObject(r)) throw invalid(`"ipam.routes[${i}]" must be an object`);
    const dst = cidrOf(r.dst, `ipam.routes[${i}].dst`).toString();
    return r.gw === undefined ? { dst } : { dst, gw: ipOf(r.gw, `ipam.routes[${i}].gw`).toString() };
  });
  const networks = listOf(ipam.networks, 'ipam.networks').map((n, i) => cidrOf(n, `ipam.networks[${i}]`));
  const requested = listOf(ipam.requested, 'ipam.requested').map((a, i) => ipOf(a, `ipam.requested[${i}]`));
  let mac: string | undefined;
  if (ipam.mac !== undefined) {
    if (typeof ipam.mac !== 'string' || !MAC.test(ipam.mac)) throw invalid('"ipam.mac" must be a MAC address like 02:00:00:00:00:01');
    mac = ipam.mac.toLowerCase();
  }
  let pod: PodRef | undefined;
  if (ipam.pod !== undefined) {
    const p = ipam.pod;
    if (!isObject(p) || typeof p.namespace !== 'string' || typeof p.name !== 'string' || (p.uid !== undefined && typeof p.uid !== 'string')) {
      throw invalid('"ipam.pod" must be {namespace, name, uid}');
    }
    pod = podOfCniArgs(new Map([['K8S_POD_NAMESPACE', p.namespace], ['K8S_POD_NAME', p.name], ...(p.uid ? [['K8S_POD_UID', p.uid] as [string, string]] : [])]));
    if (!pod) throw invalid(`"ipam.pod" ${p.namespace.slice(0, 64)}/${p.name.slice(0, 64)} is not a Kubernetes namespace and name`);
  }
  return { cniVersion, name: raw.name, dataDir, ranges, routes, networks, requested, ...(mac ? { mac } : {}), ...(pod ? { pod } : {}) };
}

/** CNI 1.1 GC's list of attachments, checked. */
export function parseValidAttachments(raw: JsonObject): Attachment[] {
  const list = raw[VALID_ATTACHMENTS_KEY];
  if (!Array.isArray(list)) throw invalid(`GC needs "${VALID_ATTACHMENTS_KEY}", a list of {containerID, ifname}`);
  return (list as unknown[]).map((a, i) => {
    if (!isObject(a) || typeof a.containerID !== 'string' || typeof a.ifname !== 'string') {
      throw invalid(`"${VALID_ATTACHMENTS_KEY}[${i}]" must be {containerID, ifname}`);
    }
    return { containerID: a.containerID, ifname: a.ifname };
  });
}

/** The weft codes for requests the allocator refuses (beyond the spec's 1-99). */
export function ipamCniError(err: IpamError): CniError {
  if (err.kind === 'exhausted') return new CniError(CniCode.tryAgainLater, err.message, 'addresses free as pods are deleted or reclaimed');
  if (err.kind === 'conflict') return new CniError(CniCode.addressConflict, err.message);
  return new CniError(CniCode.invalidAddress, err.message);
}

/**
 * The CNI result for a container's allocations: each address with its
 * range's prefix and gateway, and the routes. A borrowed address is alone in
 * its /32 (/128) with no `gateway` (the bridge plugin would put one on every
 * route and on the bridge with the /32's mask), and its family's only route
 * is its gateway, on-link: the bridge plugin adds routes with universe scope,
 * through which the kernel refuses any next hop, so the `weft` plugin adds
 * the gateway's scope-link route and the usual routes after (routePodVia).
 */
export function ipamResult(conf: IpamConf, allocations: Allocation[]): JsonObject {
  const old = compareVersions(conf.cniVersion, '1.0.0') < 0;
  const ips: JsonObject[] = [];
  const onLink: IpamRoute[] = [];
  const borrowedFamilies = new Set<number>();
  for (const a of allocations) {
    const ip = IP.parse(a.address);
    const range = conf.ranges.find((r) => r.subnet.contains(ip)) ?? conf.ranges.find((r) => r.subnet.family === ip.family);
    const gw = range && gatewayOf(range);
    const entry: JsonObject = old ? { version: String(ip.family) } : {};
    if (a.borrowed || !range?.subnet.contains(ip)) {
      entry.address = `${a.address}/${ip.bits}`;
      borrowedFamilies.add(ip.family);
      if (gw) onLink.push({ dst: `${gw}/${gw.bits}` });
    } else {
      entry.address = `${a.address}/${range.subnet.prefixLen}`;
      if (gw) entry.gateway = gw.toString();
    }
    ips.push(entry);
  }
  const routes = conf.routes.filter((r) => !borrowedFamilies.has(IP.parse(r.dst.split('/')[0]!).family));
  return { cniVersion: conf.cniVersion, ips, routes: [...onLink, ...routes], dns: {} };
}

interface IpamEnv {
  containerId: string;
  ifname: string;
  netns: string;
  pod?: PodRef;
}

function checkIpamEnv(command: string, env: NodeJS.ProcessEnv): IpamEnv {
  const required = ['CNI_CONTAINERID', 'CNI_IFNAME', ...(command === 'ADD' ? ['CNI_NETNS'] : [])];
  const missing = required.filter((k) => !env[k]);
  if (missing.length) throw new CniError(CniCode.invalidEnv, `required environment variables missing: ${missing.join(', ')}`);
  const pod = podOfCniArgs(parseCniArgs(env.CNI_ARGS));
  return {
    containerId: checkContainerId(env.CNI_CONTAINERID as string),
    ifname: checkIfname(env.CNI_IFNAME as string),
    netns: env.CNI_NETNS ?? '',
    ...(pod ? { pod } : {}),
  };
}

function paths(conf: IpamConf): StorePaths {
  try {
    return storePaths(conf.dataDir, conf.name);
  } catch (err) {
    throw invalid((err as Error).message);
  }
}

/** Store failures (a corrupt state.json, an unwritable dir) as CNI I/O errors, one line. */
function inStore<T>(p: StorePaths, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof IpamError) throw ipamCniError(err);
    if (err instanceof WeftError) throw new CniError(CniCode.ioFailure, err.message);
    throw err;
  }
}

/**
 * Frees, with no grace, the allocations whose network namespace is gone: a
 * runtime that crashed never sent their DEL. Run under the store's lock when
 * a range is full, so a pod is never refused for addresses nobody uses.
 */
export function reclaimGoneNetns(state: IpamState, now: Date, exists: (path: string) => boolean = existsSync): IpamState {
  const present = new Set(state.allocations.map((a) => a.netns).filter((p) => p !== '' && exists(p)));
  const decisions = decideGc(state.allocations, now, { existingNetns: present }, 0);
  return decisions.length ? applyGc(state, decisions, now) : state;
}

/** kubelet's CNI_ARGS name the pod; the agent's answer (ipam.pod) adds its uid when kubelet gave none. */
function podOf(env: IpamEnv, conf: IpamConf): PodRef | undefined {
  if (!env.pod) return conf.pod;
  const sameUid = !env.pod.uid && conf.pod?.uid && conf.pod.namespace === env.pod.namespace && conf.pod.name === env.pod.name;
  return sameUid ? { ...env.pod, uid: conf.pod!.uid! } : env.pod;
}

export function ipamAdd(conf: IpamConf, env: IpamEnv, now = new Date(), exists: (path: string) => boolean = existsSync): { result: JsonObject; freed: number } {
  const p = paths(conf);
  const pod = podOf(env, conf);
  const req = {
    containerId: env.containerId, ifname: env.ifname, netns: env.netns, now, networks: conf.networks, requested: conf.requested,
    ...(pod ? { pod } : {}), ...(conf.mac ? { mac: conf.mac } : {}),
  };
  return inStore(p, () => updateState(p, (state) => {
    try {
      const r = allocate(state, conf.ranges, req);
      return { state: r.state, result: { result: ipamResult(conf, r.allocated), freed: 0 } };
    } catch (err) {
      if (!(err instanceof IpamError) || err.kind !== 'exhausted') throw err;
      const reclaimed = reclaimGoneNetns(state, now, exists);
      if (reclaimed === state) throw err;
      const r = allocate(reclaimed, conf.ranges, req);
      return { state: r.state, result: { result: ipamResult(conf, r.allocated), freed: reclaimed.lastReconcile?.freed.length ?? 0 } };
    }
  }));
}

export function ipamDel(conf: IpamConf, env: IpamEnv, now = new Date()): Allocation[] {
  const p = paths(conf);
  return inStore(p, () => updateState(p, (state) => {
    const r = release(state, env.containerId, env.ifname, now);
    return { state: r.state, result: r.released };
  }));
}

export function ipamCheck(conf: IpamConf, env: IpamEnv): void {
  const p = paths(conf);
  const mine = inStore(p, () => updateState(p, (state) => ({ state, result: allocationsOf(state, env.containerId, env.ifname) })));
  if (mine.length === 0) throw new CniError(CniCode.unknownContainer, `weft-ipam holds no address for container ${env.containerId} interface ${env.ifname}`);
}

/** CNI GC: frees every allocation not in the runtime's list; returns what it freed. */
export function ipamGc(conf: IpamConf, valid: Attachment[], now = new Date()): number {
  const p = paths(conf);
  return inStore(p, () => updateState(p, (state) => {
    const decisions = decideGc(state.allocations, now, { validAttachments: valid });
    return { state: applyGc(state, decisions, now), result: decisions.length };
  }));
}

/** Runs one weft-ipam command; never throws: failures become CNI error JSON. */
export async function runIpam(call: CniInvocation): Promise<CniOutcome> {
  const version = peekVersion(call.stdin) ?? LATEST;
  try {
    const command = cniCommand(call.env);
    if (command === 'VERSION') return { stdout: versionReply(call.stdin), exitCode: 0 };
    const raw = decodeConf(call.stdin);
    const conf = parseIpamConf(raw);
    if (command === 'GC') {
      if (compareVersions(conf.cniVersion, '1.1.0') < 0) throw new CniError(CniCode.incompatibleVersion, `GC needs cniVersion 1.1.0 or later, got ${conf.cniVersion}`);
      const freed = ipamGc(conf, parseValidAttachments(raw));
      return { stdout: '', exitCode: 0, ...(freed ? { log: `weft-ipam: GC freed ${freed} address${freed === 1 ? '' : 'es'} not in the runtime's valid attachments` } : {}) };
    }
    const env = checkIpamEnv(command, call.env);
    if (command === 'DEL') {
      ipamDel(conf, env);
      return { stdout: '', exitCode: 0 };
    }
    if (command === 'CHECK') {
      ipamCheck(conf, env);
      return { stdout: '', exitCode: 0 };
    }
    const { result, freed } = ipamAdd(conf, env);
    return {
      stdout: JSON.stringify(result) + '\n',
      exitCode: 0,
      ...(freed ? { log: `weft-ipam: the range was full; freed ${freed} address${freed === 1 ? '' : 'es'} whose network namespace is gone` } : {}),
    };
  } catch (err) {
    return failureOutcome(err, version);
  }
}
