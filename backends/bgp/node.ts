// What the bgp backend leaves on a node outside the kernel state the
// reconciler owns: its BIRD. For `weft agent --teardown` and `weft status`.
import { join } from 'node:path';
import { runCommand } from '../../src/core/command.js';
import type { Family } from '../../src/core/cidr.js';
import { parseJsonSequence } from '../../src/dataplane/iproute.js';
import { oneLine } from '../../src/errors.js';
import type { NodeContext } from '../registry.js';
import { birdSocketPath, removeOwnBird, showBgpSessions } from './birdc.js';
import type { BgpSession } from './status.js';

/** Stops the node's own BIRD (never one behind --bird-socket) and flushes the routes it kept. */
export function removeNodeBird(node: NodeContext): Promise<boolean> {
  return removeOwnBird(join(node.runDir, 'bird'), node.network);
}

/** The BGP sessions of the node's BIRD and the routes it put into the kernel, as JSON and as lines for `weft status`. */
export async function bgpNodeStatus(node: NodeContext): Promise<{ json: BgpStatus; lines: string[] }> {
  const bgp = await bgpSessions(node.birdSocket ?? birdSocketPath(join(node.runDir, 'bird')));
  const routes = await Promise.all(FAMILIES.map(async (family) => ({ family, ...(await kernelRoutes(family)) })));
  const json = { ...bgp, routes };
  return { json, lines: formatBgpStatus(json) };
}

const FAMILIES: Family[] = [4, 6];

export interface BgpStatus {
  socket: string;
  sessions?: BgpSession[];
  /** Why BIRD could not be asked. */
  error?: string;
  /** The kernel routes BIRD installed (proto bird), per family: destination and next hop. */
  routes?: { family: Family; routes?: { dst: string; via?: string; dev?: string }[]; error?: string }[];
}

async function kernelRoutes(family: Family): Promise<{ routes?: { dst: string; via?: string; dev?: string }[]; error?: string }> {
  const r = await runCommand(['ip', `-${family}`, '-json', 'route', 'show', 'table', 'main', 'proto', 'bird'], { check: false, timeoutMs: 5000 }).catch((err: unknown) => ({ code: 1, stdout: '', stderr: oneLine(err) }));
  if (r.code !== 0) return { error: r.stderr.trim().split('\n')[0] ?? `exit code ${r.code}` };
  const rows = parseJsonSequence(r.stdout).flat() as { dst?: string; gateway?: string; dev?: string }[];
  return { routes: rows.filter((row) => typeof row.dst === 'string').map((row) => ({ dst: row.dst!, ...(row.gateway ? { via: row.gateway } : {}), ...(row.dev ? { dev: row.dev } : {}) })) };
}

async function bgpSessions(socket: string): Promise<BgpStatus> {
  try {
    return { socket, sessions: await showBgpSessions(socket) };
  } catch (err) {
    return { socket, error: oneLine(err) };
  }
}

/** `weft status` lines: sessions (with how many are up per family), then BIRD's kernel routes per family. */
export function formatBgpStatus(bgp: BgpStatus): string[] {
  const lines = bgp.sessions ? sessionLines(bgp.sessions, bgp.socket) : [`bgp      ${bgp.error}`];
  for (const r of bgp.routes ?? []) {
    if (r.error) lines.push(`routes   IPv${r.family}: cannot list (${r.error})`);
    else if (r.routes && r.routes.length > 0) lines.push(`routes   IPv${r.family}: ${r.routes.length} from BIRD (proto bird)`, ...r.routes.map((x) => `  ${x.dst}${x.via ? ` via ${x.via}` : ''}${x.dev ? ` dev ${x.dev}` : ''}`));
  }
  return lines;
}

function sessionLines(sessions: readonly BgpSession[], socket: string): string[] {
  const up = (list: readonly BgpSession[]): number => list.filter((s) => s.state === 'Established').length;
  const perFamily = FAMILIES.flatMap((family) => {
    const list = sessions.filter((s) => sessionFamily(s) === family);
    return list.length > 0 ? [`IPv${family} ${up(list)}/${list.length}`] : [];
  });
  const rows = [
    ['PEER', 'AS', 'STATE', 'SINCE', 'IMPORTED', 'EXPORTED', 'INFO'],
    ...sessions.map((s) => [s.peer || s.name, String(s.asn ?? '-'), s.state, s.since, String(s.importedRoutes), String(s.exportedRoutes), s.info]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return [
    `bgp      ${sessions.length} sessions, ${up(sessions)} established${perFamily.length > 1 ? ` (${perFamily.join(', ')})` : ''} (birdc -s ${socket})`,
    ...rows.map((r) => `  ${r.map((c, i) => c.padEnd(widths[i]! + 2)).join('').trimEnd()}`),
  ];
}

/** A session's family, from its neighbor address (or, when BIRD printed none, weft's protocol name). */
function sessionFamily(s: BgpSession): Family {
  if (s.peer) return s.peer.includes(':') ? 6 : 4;
  return /^[a-z]+(_\d{1,3}){4}$/.test(s.name) ? 4 : 6;
}
