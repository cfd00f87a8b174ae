// The kernel's connection tracking table, through Debian's `conntrack`:
// list the tracked flows, delete exact ones. A NetworkPolicy change that
// newly denies a connection deletes its entry; the connection's next packet
// then meets the rules as a new one and is dropped, while a connection the
// rules still allow is tracked again from that packet and carries on.
import { runCommand } from '../core/command.js';
import { IP } from '../core/cidr.js';

/** A tracked flow in its original direction (the side that opened it first). */
export interface TrackedFlow {
  /** tcp, udp, sctp, icmp, icmpv6, or the kernel's number for others. */
  proto: string;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
}

/** Parses `conntrack -L` output; lines it cannot read are skipped. */
export function parseConntrackList(text: string): TrackedFlow[] {
  const flows: TrackedFlow[] = [];
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/);
    const proto = words[0];
    if (!proto || proto === 'conntrack') continue;
    // The first src=/dst=/sport=/dport= are the original direction's; the reply's follow.
    const first = (key: string): string | undefined => words.find((w) => w.startsWith(`${key}=`))?.slice(key.length + 1);
    const src = canonicalIP(first('src'));
    const dst = canonicalIP(first('dst'));
    if (!src || !dst) continue;
    const sport = port(first('sport'));
    const dport = port(first('dport'));
    flows.push({ proto, src, dst, ...(sport !== undefined ? { sport } : {}), ...(dport !== undefined ? { dport } : {}) });
  }
  return flows;
}

function canonicalIP(text: string | undefined): string | undefined {
  if (!text) return undefined;
  try {
    return IP.parse(text).toString();
  } catch {
    return undefined;
  }
}

function port(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,5}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

/** `conntrack -D` arguments that delete exactly this flow. */
export function deleteArgs(flow: TrackedFlow): string[] {
  const family = flow.src.includes(':') ? ['-f', 'ipv6'] : [];
  const ports = flow.sport !== undefined && flow.dport !== undefined ? ['--sport', String(flow.sport), '--dport', String(flow.dport)] : [];
  return ['conntrack', '-D', ...family, '-p', flow.proto, '-s', flow.src, '-d', flow.dst, ...ports];
}

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

  /** Deletes each flow; one that is already gone is not an error. Returns how many were deleted. */
  async delete(flows: readonly TrackedFlow[]): Promise<number> {
    let deleted = 0;
    for (const flow of flows) {
      // Exit 1 with "0 flow entries have been deleted" when the flow ended meanwhile.
      const res = await runCommand(deleteArgs(flow), { ...this.where(), check: false });
      const m = /(\d+) flow entr(?:y|ies) ha(?:s|ve) been deleted/.exec(res.stderr);
      if (m) deleted += Number(m[1]);
      else if (res.code !== 0) throw new Error(`${deleteArgs(flow).join(' ')}: ${res.stderr.trim().split('\n')[0] || `exit ${res.code}`}`);
    }
    return deleted;
  }

  private where(): { netns?: string } {
    return this.opts.netns !== undefined ? { netns: this.opts.netns } : {};
  }
}
