// The kernel's connection tracking table, through Debian's `conntrack`:
// list the tracked flows, delete exact ones. A NetworkPolicy change that
// newly denies a connection deletes its entry; the connection's next packet
// then meets the rules as a new one and is dropped, while a connection the
// rules still allow is tracked again from that packet and carries on.
import { runCommand } from '../core/command.js';
import { normaliseIP } from './desired-check.js';

/** A tracked flow in its original direction (the side that opened it first). */
export interface TrackedFlow {
  /** tcp, udp, sctp, icmp, icmpv6, or the kernel's number for others. */
  proto: string;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  /**
   * A reply was seen and (TCP) the connection is not closing: only then do
   * packets pass as established. An unreplied entry's packets still meet the
   * rules as new ones, and a TIME_WAIT one carries nothing: neither needs cutting.
   */
  live: boolean;
}

/** TCP states of a connection that is over. */
const CLOSED_STATES = new Set(['TIME_WAIT', 'CLOSE']);

/** Parses `conntrack -L` output; lines it cannot read are skipped. */
export function parseConntrackList(text: string): TrackedFlow[] {
  const flows: TrackedFlow[] = [];
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/);
    const proto = words[0];
    if (!proto || proto === 'conntrack') continue;
    // The first src=/dst=/sport=/dport= are the original direction's; the reply's follow.
    const first = (key: string): string | undefined => words.find((w) => w.startsWith(`${key}=`))?.slice(key.length + 1);
    const src = normaliseIP(first('src'));
    const dst = normaliseIP(first('dst'));
    if (!src || !dst) continue;
    const sport = port(first('sport'));
    const dport = port(first('dport'));
    // "tcp 6 119 TIME_WAIT src=..." : the state follows the protocol number and the timeout.
    const live = !words.includes('[UNREPLIED]') && !(proto === 'tcp' && CLOSED_STATES.has(words[3] ?? ''));
    flows.push({ proto, src, dst, ...(sport !== undefined ? { sport } : {}), ...(dport !== undefined ? { dport } : {}), live });
  }
  return flows;
}


function port(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,5}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

/** What one `conntrack -D` deletes: one flow (with its ports), or every flow of a protocol between two addresses (without). */
export type FlowFilter = Pick<TrackedFlow, 'proto' | 'src' | 'dst' | 'sport' | 'dport'>;

/** `conntrack -D` arguments for the filter. */
export function deleteArgs(flow: FlowFilter): string[] {
  const family = flow.src.includes(':') ? ['-f', 'ipv6'] : [];
  const ports = flow.sport !== undefined && flow.dport !== undefined ? ['--sport', String(flow.sport), '--dport', String(flow.dport)] : [];
  return ['conntrack', '-D', ...family, '-p', flow.proto, '-s', flow.src, '-d', flow.dst, ...ports];
}

/**
 * The fewest deletes that remove `denied` and nothing in `kept`: one per
 * protocol and address pair when no kept flow shares it, else one per flow.
 */
export function deleteFilters(denied: readonly TrackedFlow[], kept: readonly TrackedFlow[]): FlowFilter[] {
  const pair = (f: TrackedFlow): string => `${f.proto} ${f.src} ${f.dst}`;
  const keptPairs = new Set(kept.map(pair));
  const out: FlowFilter[] = [];
  const whole = new Set<string>();
  for (const f of denied) {
    const k = pair(f);
    if (keptPairs.has(k)) out.push({ proto: f.proto, src: f.src, dst: f.dst, ...(f.sport !== undefined ? { sport: f.sport } : {}), ...(f.dport !== undefined ? { dport: f.dport } : {}) });
    else if (!whole.has(k)) {
      whole.add(k);
      out.push({ proto: f.proto, src: f.src, dst: f.dst });
    }
  }
  return out;
}

/** Deletes run this many at a time. */
const DELETE_CONCURRENCY = 8;

export interface ConntrackOptions {
  /** Network namespace (tests); the agent's own when absent. */
  netns?: string;
}

/** Lists and deletes tracked flows. A missing `conntrack` rejects with one line naming the package. */
export class Conntrack {
  constructor(private readonly opts: ConntrackOptions = {}) {}

  /** Every tracked flow of both families. */
  async list(): Promise<TrackedFlow[]> {
    const flows: TrackedFlow[] = [];
    for (const family of ['ipv4', 'ipv6']) {
      const res = await runCommand(['conntrack', '-L', '-f', family], { ...this.where(), check: false });
      if (res.code !== 0) throw new Error(`conntrack -L -f ${family}: ${res.stderr.trim().split('\n')[0] || `exit ${res.code}`}`);
      flows.push(...parseConntrackList(res.stdout));
    }
    return flows;
  }

  /** Deletes what each filter names; a flow already gone is not an error. Returns how many entries were deleted. */
  async delete(filters: readonly FlowFilter[]): Promise<number> {
    let deleted = 0;
    const queue = [...filters];
    const worker = async (): Promise<void> => {
      for (let f = queue.shift(); f; f = queue.shift()) {
        // Exit 1 with "0 flow entries have been deleted" when the flow ended meanwhile.
        const res = await runCommand(deleteArgs(f), { ...this.where(), check: false });
        const m = /(\d+) flow entr(?:y|ies) ha(?:s|ve) been deleted/.exec(res.stderr);
        if (m) deleted += Number(m[1]);
        else if (res.code !== 0) throw new Error(`${deleteArgs(f).join(' ')}: ${res.stderr.trim().split('\n')[0] || `exit ${res.code}`}`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(DELETE_CONCURRENCY, queue.length) }, worker));
    return deleted;
  }

  private where(): { netns?: string } {
    return this.opts.netns !== undefined ? { netns: this.opts.netns } : {};
  }
}
