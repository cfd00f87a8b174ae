import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { AgentStatus } from '../agent/agent.js';
import { WeftError, oneLine } from '../errors.js';
import { birdSocketPath, showBgpSessions } from '../../backends/bgp/bird.js';
import type { BgpSession } from '../../backends/bgp/status.js';

const HELP = `usage: weft status [--run-dir DIR] [--bird-socket PATH] [--json]

Shows what the agent on this node last programmed: its subnet, backend and peers;
with the bgp backend also the BGP sessions of its BIRD (default socket <run-dir>/bird/bird.ctl).`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'run-dir': { type: 'string', default: '/run/weft' },
      'bird-socket': { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  const path = join(values['run-dir'] ?? '/run/weft', 'status.json');
  let status: AgentStatus;
  try {
    status = JSON.parse(await readFile(path, 'utf8')) as AgentStatus;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new WeftError(
      code === 'ENOENT' ? `no agent status at ${path}` : `cannot read ${path} (${code ?? (err as Error).message})`,
      'is the agent running on this node? pass its --run-dir',
    );
  }
  const bgp = status.backend === 'bgp' ? await bgpSessions(values['bird-socket'] ?? birdSocketPath(join(values['run-dir'] ?? '/run/weft', 'bird'))) : undefined;
  if (values.json) {
    process.stdout.write(JSON.stringify(bgp ? { ...status, bgp } : status, null, 2) + '\n');
    return 0;
  }
  const out = [
    `node     ${status.node} (${status.publicIP} on ${status.iface})`,
    `backend  ${status.backend}`,
    `subnet   ${status.subnet}`,
    `ready    ${status.ready ? 'yes' : 'no'}   (updated ${status.updatedAt})`,
    `peers    ${status.peers.length}`,
    ...status.peers.map((p) => `  ${p.subnet.padEnd(18)} ${p.publicIP.padEnd(15)} ${p.backend}${p.node ? `  ${p.node}` : ''}`),
    ...(bgp ? formatBgpSessions(bgp) : []),
  ];
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}

interface BgpStatus {
  socket: string;
  sessions?: BgpSession[];
  /** Why BIRD could not be asked. */
  error?: string;
}

async function bgpSessions(socket: string): Promise<BgpStatus> {
  try {
    return { socket, sessions: await showBgpSessions(socket) };
  } catch (err) {
    return { socket, error: oneLine(err) };
  }
}

function formatBgpSessions(bgp: BgpStatus): string[] {
  if (!bgp.sessions) return [`bgp      ${bgp.error}`];
  const up = bgp.sessions.filter((s) => s.state === 'Established').length;
  const rows = [
    ['PEER', 'AS', 'STATE', 'SINCE', 'IMPORTED', 'EXPORTED', 'INFO'],
    ...bgp.sessions.map((s) => [s.peer || s.name, String(s.asn ?? '-'), s.state, s.since, String(s.importedRoutes), String(s.exportedRoutes), s.info]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return [
    `bgp      ${bgp.sessions.length} sessions, ${up} established (birdc -s ${bgp.socket})`,
    ...rows.map((r) => `  ${r.map((c, i) => c.padEnd(widths[i]! + 2)).join('').trimEnd()}`),
  ];
}
