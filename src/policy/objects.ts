// Pods, namespaces and NetworkPolicies from the API server's JSON into what
// policy reads (types.ts), trusting nothing about their shape: a value of
// the wrong type is left out, never thrown on, so one odd object cannot stop
// the watch of all the others. Pure: no I/O, no clock.
import { IP } from '../core/cidr.js';
import type { NamespaceInfo, NetworkPolicyObject, PodInfo, PodPort } from './types.js';

type Json = Record<string, unknown>;

const PROTOCOLS: ReadonlySet<string> = new Set(['TCP', 'UDP', 'SCTP']);

/**
 * The pod as policy sees it, or undefined for a pod policy leaves out:
 * host-network pods (their address is the node's), pods with no valid
 * address yet, and finished pods (phase Succeeded or Failed: their address
 * may already be another pod's). A terminating pod (deletionTimestamp set)
 * is still in, until it is deleted.
 */
export function podInfoOf(obj: unknown): PodInfo | undefined {
  const meta = objectAt(obj, 'metadata');
  const namespace = nameAt(meta, 'namespace');
  const name = nameAt(meta, 'name');
  if (namespace === undefined || name === undefined) return undefined;
  const spec = objectAt(obj, 'spec');
  const status = objectAt(obj, 'status');
  if (spec?.hostNetwork === true) return undefined;
  if (status?.phase === 'Succeeded' || status?.phase === 'Failed') return undefined;
  const ips = podIps(status);
  if (ips.length === 0) return undefined;
  return {
    namespace,
    name,
    labels: labelsOf(meta),
    nodeName: typeof spec?.nodeName === 'string' ? spec.nodeName : '',
    ips,
    ports: containerPorts(spec),
  };
}

/** The namespace's name and labels, or undefined without a name. */
export function namespaceInfoOf(obj: unknown): NamespaceInfo | undefined {
  const meta = objectAt(obj, 'metadata');
  const name = nameAt(meta, 'name');
  if (name === undefined) return undefined;
  return { name, labels: labelsOf(meta) };
}

/** The policy's namespace and name, checked, and its spec exactly as sent (the compiler validates it). */
export function policyObjectOf(obj: unknown): NetworkPolicyObject | undefined {
  const meta = objectAt(obj, 'metadata');
  const namespace = nameAt(meta, 'namespace');
  const name = nameAt(meta, 'name');
  if (namespace === undefined || name === undefined) return undefined;
  return { namespace, name, spec: (obj as Json).spec };
}

/** status.podIPs (status.podIP when there is no list), valid ones only, canonical, the first of each family. */
export function podIps(status: Json | undefined): string[] {
  const listed = Array.isArray(status?.podIPs) ? status.podIPs.map((e) => (isObject(e) ? e.ip : undefined)) : [];
  const texts = listed.length > 0 ? listed : [status?.podIP];
  const byFamily = new Map<number, string>();
  for (const text of texts) {
    if (typeof text !== 'string') continue;
    let ip: IP;
    try {
      ip = IP.parse(text);
    } catch {
      continue;
    }
    if (!byFamily.has(ip.family)) byFamily.set(ip.family, ip.toString());
  }
  return [...byFamily.values()];
}

/** Every container's declared ports; an entry without a valid port number, protocol or name is dropped. */
function containerPorts(spec: Json | undefined): PodPort[] {
  const out: PodPort[] = [];
  const containers = Array.isArray(spec?.containers) ? spec.containers : [];
  for (const c of containers) {
    const ports = isObject(c) && Array.isArray(c.ports) ? c.ports : [];
    for (const p of ports) {
      if (!isObject(p)) continue;
      const { containerPort, protocol = 'TCP', name } = p;
      if (typeof containerPort !== 'number' || !Number.isInteger(containerPort) || containerPort < 1 || containerPort > 65535) continue;
      if (typeof protocol !== 'string' || !PROTOCOLS.has(protocol)) continue;
      if (name !== undefined && (typeof name !== 'string' || name === '')) continue;
      out.push({ ...(name !== undefined ? { name } : {}), containerPort, protocol: protocol as PodPort['protocol'] });
    }
  }
  return out;
}

/** metadata.labels, string values only (anything else cannot be matched by a selector). */
function labelsOf(meta: Json | undefined): Record<string, string> {
  const labels = meta?.labels;
  if (!isObject(labels)) return {};
  // fromEntries defines own properties: a "__proto__" label stays a label.
  return Object.fromEntries(Object.entries(labels).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

function nameAt(obj: Json | undefined, key: string): string | undefined {
  const v = obj?.[key];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function objectAt(obj: unknown, key: string): Json | undefined {
  const v = isObject(obj) ? obj[key] : undefined;
  return isObject(v) ? v : undefined;
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
