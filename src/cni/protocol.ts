// What both of weft's CNI plugins (`weft` and `weft-ipam`) share of the CNI
// protocol: the versions they speak, reading the config on stdin, and
// turning any failure into the spec's error JSON.
import { isObject, type JsonObject } from './delegate.js';
import { CniCode, CniError, DelegateError } from './errors.js';

/** CNI 1.1 GC: the attachments the runtime still has; every other one is freed. */
export const VALID_ATTACHMENTS_KEY = 'cni.dev/valid-attachments';

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export const LATEST = '1.1.0';
const MAX_STDIN = 1 << 20;

export interface CniInvocation {
  env: NodeJS.ProcessEnv;
  stdin: string;
}

export interface CniOutcome {
  stdout: string;
  exitCode: number;
  /** A line for the runtime's log (stderr), e.g. what an in-ADD GC freed. */
  log?: string;
}

export function isSupported(v: string): boolean {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** The config's cniVersion if stdin parses and names a supported one. */
export function peekVersion(stdin: string): string | undefined {
  try {
    const v: unknown = stdin.length <= MAX_STDIN && stdin.trim() ? (JSON.parse(stdin) as JsonObject)?.cniVersion : undefined;
    return typeof v === 'string' && isSupported(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

export function versionReply(stdin: string): string {
  return JSON.stringify({ cniVersion: peekVersion(stdin) ?? LATEST, supportedVersions: SUPPORTED_VERSIONS }) + '\n';
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function decodeConf(stdin: string): JsonObject {
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

/** The config's cniVersion, checked. */
export function checkVersion(v: unknown): string {
  if (typeof v !== 'string' || !isSupported(v)) {
    const shown = typeof v === 'string' ? `"${v.slice(0, 16)}"` : v === undefined ? 'missing' : 'not a string';
    throw new CniError(CniCode.incompatibleVersion, `cniVersion ${shown} is not supported`, `supported: ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  return v;
}

/** A failure as the runtime must see it: a delegate's own error passed through, anything else as CNI error JSON. */
export function failureOutcome(err: unknown, version: string): CniOutcome {
  if (err instanceof DelegateError) return { stdout: err.output, exitCode: 1 };
  const e = err instanceof CniError ? err : new CniError(999, `internal error: ${(err as Error)?.message ?? String(err)}`);
  return { stdout: JSON.stringify(e.toJSON(version)) + '\n', exitCode: 1 };
}

// The spec's rules for container ids and interface names; they also keep
// file names made from them inside their directory.
export const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
export const IFNAME = /^[^\s/:]{1,15}$/;

export function checkContainerId(id: string, what = 'CNI_CONTAINERID'): string {
  if (!CONTAINER_ID.test(id) || id.length > 256) throw new CniError(CniCode.invalidEnv, `${what} "${id.slice(0, 64)}" is not a valid container id`);
  return id;
}

export function checkIfname(name: string, what = 'CNI_IFNAME'): string {
  if (!IFNAME.test(name) || name === '.' || name === '..') throw new CniError(CniCode.invalidEnv, `${what} "${name.slice(0, 32)}" is not a valid interface name`);
  return name;
}

/**
 * kubelet's CNI_ARGS: `;`-separated `K=V` pairs (IgnoreUnknown=1;K8S_POD_NAMESPACE=...).
 * A pair without `=` or with an empty key is skipped, never trusted; values are kept as text.
 */
export function parseCniArgs(text: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const pair of (text ?? '').slice(0, 8192).split(';')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    out.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
  }
  return out;
}

/** The pod of CNI_ARGS, when kubelet named one with values that can be a Kubernetes namespace and name. */
export function podOfCniArgs(args: Map<string, string>): { namespace: string; name: string; uid?: string } | undefined {
  const namespace = args.get('K8S_POD_NAMESPACE');
  const name = args.get('K8S_POD_NAME');
  // DNS-1123 subdomain (names) and label (namespaces): nothing else reaches a URL or the store.
  if (!namespace || !name || !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(namespace) || !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(name)) return undefined;
  const uid = args.get('K8S_POD_UID');
  return { namespace, name, ...(uid && /^[A-Za-z0-9-]{1,64}$/.test(uid) ? { uid } : {}) };
}

/** The CNI verb in CNI_COMMAND that both weft plugins answer; anything else is one CniError. */
export function cniCommand(env: NodeJS.ProcessEnv): 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'VERSION' {
  const command = env.CNI_COMMAND;
  if (command === 'ADD' || command === 'DEL' || command === 'CHECK' || command === 'GC' || command === 'VERSION') return command;
  throw new CniError(
    CniCode.invalidEnv,
    command ? `unknown CNI_COMMAND "${command.slice(0, 32)}"` : 'CNI_COMMAND is not set',
    'expected ADD, DEL, CHECK, GC or VERSION',
  );
}
