// What a new net-conf text means for a running agent: nothing, a backend
// switch, or a refusal (invalid, or a change only a cluster rebuild can make),
// and the one line that says so.
import { checkBackendOptions } from '../../backends/registry.js';
import { parseNetConf } from '../config/parse.js';
import type { BackendConf, NetConf, SubnetRange } from '../config/netconf.js';
import { oneLine } from '../errors.js';
import type { NetConfUpdate } from '../config/source.js';

export type ConfigChange =
  /** Same Networks and backend (SubnetMin/SubnetMax of either family may differ: they only matter for new leases). */
  | { kind: 'same'; conf: NetConf; rangeChanged: boolean }
  | { kind: 'backend-changed'; conf: NetConf; from: string; to: string; rangeChanged: boolean }
  | { kind: 'invalid'; reason: string }
  /** Network or SubnetLen changed: every lease and every pod address would move. */
  | { kind: 'network-changed'; reason: string }
  /** EnableIPv6 toggled: leases gain or lose a half, which the agents take at their restart. */
  | { kind: 'family-changed'; reason: string };

export function classifyConfigChange(current: NetConf, text: string): ConfigChange {
  let next: NetConf;
  try {
    next = checkBackendOptions(parseNetConf(text));
  } catch (err) {
    return { kind: 'invalid', reason: oneLine(err) };
  }
  if (Boolean(next.ipv6) !== Boolean(current.ipv6)) {
    const was = current.ipv6 ? 'true' : 'false';
    return { kind: 'family-changed', reason: `EnableIPv6 changed from ${was} to ${next.ipv6 ? 'true' : 'false'}` };
  }
  const moved = rangeMoved('', current, next) ?? (current.ipv6 && next.ipv6 ? rangeMoved('IPv6', current.ipv6, next.ipv6) : undefined);
  if (moved) return { kind: 'network-changed', reason: moved };
  const edgesMoved = (a: SubnetRange, b: SubnetRange): boolean => !a.subnetMin.equals(b.subnetMin) || !a.subnetMax.equals(b.subnetMax);
  const rangeChanged = edgesMoved(current, next) || (current.ipv6 !== undefined && next.ipv6 !== undefined && edgesMoved(current.ipv6, next.ipv6));
  const from = describeBackend(current.backend);
  const to = describeBackend(next.backend);
  if (from === to) return { kind: 'same', conf: next, rangeChanged };
  return { kind: 'backend-changed', conf: next, from, to, rangeChanged };
}

/** How one family's Network or subnet length moved (key names prefixed `IPv6` for that family), if it did. */
function rangeMoved(prefix: '' | 'IPv6', current: SubnetRange, next: SubnetRange): string | undefined {
  if (!next.network.equals(current.network)) return `${prefix}Network changed from ${current.network} to ${next.network}`;
  if (next.subnetLen !== current.subnetLen) return `${prefix}SubnetLen changed from ${current.subnetLen} to ${next.subnetLen}`;
  return undefined;
}

/**
 * The one log line for an update the running agent refuses (unreadable,
 * invalid, or a change only a cluster rebuild can make), or undefined.
 */
export function refusalLine(update: NetConfUpdate, change: ConfigChange | undefined, where: string, running: string): string | undefined {
  const keeps = `backend ${running} keeps running`;
  if ('unreadable' in update) return `cannot read the network config (${update.unreadable}); ${keeps}`;
  if (change?.kind === 'invalid') return `new network config in ${where} refused: ${change.reason}; ${keeps}`;
  if (change?.kind === 'network-changed') {
    return `new network config in ${where} refused: ${change.reason}, which needs a cluster rebuild (every lease and pod address moves); ${keeps}`;
  }
  if (change?.kind === 'family-changed') {
    return `new network config in ${where} refused: ${change.reason}, which takes effect when each agent restarts (leases gain or lose their IPv6 half, pods their IPv6 address when recreated); ${keeps}`;
  }
  return undefined;
}

/** The Backend section as one canonical line: `vxlan {"Port":4789,"VNI":2}`; equal sections give equal lines. */
export function describeBackend(backend: BackendConf): string {
  const keys = Object.keys(backend.raw).sort();
  return keys.length ? `${backend.type} ${canonicalJson(backend.raw)}` : backend.type;
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    return `{${Object.keys(obj).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
