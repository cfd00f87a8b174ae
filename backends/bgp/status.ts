// Pure parser of BIRD 2's `birdc show protocols all` into BGP sessions.
// Calico's parser reads BIRD 1.6; BIRD 2 prints channels, so routes are
// summed over each protocol's channels here.

export interface BgpSession {
  /** BIRD protocol name, e.g. node_198_51_100_2. */
  name: string;
  /** Neighbor address ("" if BIRD did not print one). */
  peer: string;
  /** Neighbor AS, when shown. */
  asn?: number;
  /** BGP state: Established, Active, Connect, Passive, OpenSent, OpenConfirm, Idle, Down. */
  state: string;
  /** BIRD's protocol state: up, start, down, stop. */
  protocolState: string;
  /** When the protocol last changed state, as BIRD printed it. */
  since: string;
  /** BIRD's info column beyond the state, e.g. "Socket: Connection refused"; the last error when there is one. */
  info: string;
  importedRoutes: number;
  exportedRoutes: number;
}

// Name Proto Table State Since Info; Since is a date, a time, or both (timeformat iso long).
const HEADER_ROW =
  /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d{4}-\d\d-\d\d(?: \d\d:\d\d:\d\d(?:\.\d+)?)?|\d\d:\d\d:\d\d(?:\.\d+)?|\S+)(?:\s+(.*))?$/;

export function parseBgpSessions(text: string): BgpSession[] {
  const sessions: BgpSession[] = [];
  let current: (BgpSession & { lastError?: string }) | undefined;
  const finish = (): void => {
    if (!current) return;
    if (current.lastError && !current.info) current.info = current.lastError;
    delete current.lastError;
    sessions.push(current);
    current = undefined;
  };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\s+$/, '');
    if (line === '' || /^BIRD .* ready\.$/.test(line) || /^Name\s+Proto\s+Table/.test(line)) continue;
    if (!/^\s/.test(line)) {
      finish();
      const m = HEADER_ROW.exec(line);
      if (!m || m[2] !== 'BGP') continue;
      const infoColumn = (m[6] ?? '').trim();
      const [stateWord = '', ...rest] = infoColumn.split(/\s+/);
      current = {
        name: m[1]!,
        peer: '',
        state: stateWord,
        protocolState: m[4]!,
        since: m[5]!,
        info: rest.join(' '),
        importedRoutes: 0,
        exportedRoutes: 0,
      };
      continue;
    }
    if (!current) continue;
    const detail = /^\s+([A-Za-z][A-Za-z0-9 ]*?):\s+(.*)$/.exec(line);
    if (!detail) continue;
    const [, key, value] = detail as unknown as [string, string, string];
    switch (key) {
      case 'BGP state':
        current.state = value.trim();
        break;
      case 'Neighbor address':
        current.peer = value.trim().replace(/%.*$/, '');
        break;
      case 'Neighbor AS': {
        const asn = Number(value.trim());
        if (Number.isInteger(asn)) current.asn = asn;
        break;
      }
      case 'Last error':
        current.lastError = value.trim();
        break;
      case 'Routes': {
        current.importedRoutes += count(value, 'imported');
        current.exportedRoutes += count(value, 'exported');
        break;
      }
    }
  }
  finish();
  return sessions;
}

function count(routes: string, what: string): number {
  const m = new RegExp(`(\\d+) ${what}`).exec(routes);
  return m ? Number(m[1]) : 0;
}
