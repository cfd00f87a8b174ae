// weft's one nftables table: the VXLAN port locked to peers, pod masquerade,
// forwarding of the cluster Network. The whole table is generated as text by
// a pure function and swapped atomically (declare, delete, define in one
// `nft -f -` transaction), and rewritten if someone deletes or edits it.
import type { Logger } from 'pino';
import { runCommand, userCause } from '../core/command.js';
import { SerialQueue } from '../core/serial-queue.js';
import { oneLine } from '../errors.js';
import { Cidr, IP } from '../core/cidr.js';

export const WEFT_NFT_TABLE = 'inet weft';

/** kube-proxy marks packets it will masquerade itself with this bit. */
const KUBE_PROXY_MASQ_MARK = '0x4000';

export interface NftRules {
  /** Accept UDP to this port only from `allowedPeers`; drop the rest. Absent: no VXLAN rules. */
  vxlanPort?: number;
  /** Peers' underlay (PublicIP) addresses, either family. */
  allowedPeers: string[];
  /** Per address family: masquerade this node's pods (`podSubnet`) talking to anything outside the cluster `network`. */
  masquerade?: { network: string; podSubnet: string }[];
  /** Accept forwarding to and from the cluster Network, one per address family. */
  forwardNetworks?: string[];
}

const cidr = (text: string, what: string): Cidr => {
  try {
    return Cidr.parse(text);
  } catch (err) {
    throw new Error(`nft: ${what}: ${oneLine(err)}`);
  }
};
const ipMatch = (c: Cidr): string => (c.family === 4 ? 'ip' : 'ip6');

/** The table's contents: sets and base chains with their rules, in order. */
interface TableSpec {
  sets: { name: string; type: string; elements: string[] }[];
  chains: { name: string; head: string; rules: string[] }[];
}

function tableSpec(rules: NftRules): TableSpec {
  const spec: TableSpec = { sets: [], chains: [] };
  if (rules.vxlanPort !== undefined) {
    const port = rules.vxlanPort;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`nft: VXLAN port ${port} is not 1-65535`);
    const peers = rules.allowedPeers.map((p) => {
      try {
        return IP.parse(p);
      } catch (err) {
        throw new Error(`nft: allowed peer: ${oneLine(err)}`);
      }
    });
    for (const family of [4, 6] as const) {
      const sorted = peers.filter((p) => p.family === family).sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
      spec.sets.push({ name: `vxlan_peers${family}`, type: `ipv${family}_addr`, elements: [...new Set(sorted.map(String))] });
    }
    spec.chains.push({
      name: 'input',
      head: 'type filter hook input priority filter; policy accept;',
      rules: [
        `udp dport ${port} ip saddr @vxlan_peers4 accept`,
        `udp dport ${port} ip6 saddr @vxlan_peers6 accept`,
        // Encapsulated frames from anyone else would be injected into the pod network.
        `udp dport ${port} drop`,
      ],
    });
  }
  if (rules.forwardNetworks?.length) {
    spec.chains.push({
      name: 'forward',
      head: 'type filter hook forward priority filter; policy accept;',
      rules: rules.forwardNetworks.flatMap((text) => {
        const net = cidr(text, 'forward network');
        const m = ipMatch(net);
        return [`${m} saddr ${net} accept`, `${m} daddr ${net} accept`];
      }),
    });
  }
  if (rules.masquerade?.length) {
    spec.chains.push({
      name: 'postrouting',
      head: 'type nat hook postrouting priority srcnat; policy accept;',
      rules: [
        `meta mark & ${KUBE_PROXY_MASQ_MARK} == ${KUBE_PROXY_MASQ_MARK} return`,
        ...rules.masquerade.flatMap((family) => {
          const net = cidr(family.network, 'masquerade network');
          const pods = cidr(family.podSubnet, 'masquerade pod subnet');
          if (net.family !== pods.family || !net.covers(pods)) {
            throw new Error(`nft: pod subnet ${pods} is not inside the network ${net}`);
          }
          const m = ipMatch(net);
          const multicast = net.family === 4 ? '224.0.0.0/4' : 'ff00::/8';
          return [`${m} saddr ${net} ${m} daddr ${net} return`, `${m} saddr ${pods} ${m} daddr != ${multicast} masquerade fully-random`];
        }),
      ],
    });
  }
  return spec;
}

/** The complete transaction text for `nft -f -`: replaces the table atomically, whatever it held. */
export function nftRuleset(rules: NftRules): string {
  const spec = tableSpec(rules);
  const out = [`table ${WEFT_NFT_TABLE}`, `delete table ${WEFT_NFT_TABLE}`, `table ${WEFT_NFT_TABLE} {`];
  for (const set of spec.sets) {
    out.push(`\tset ${set.name} {`, `\t\ttype ${set.type}`);
    if (set.elements.length) out.push(`\t\telements = { ${set.elements.join(', ')} }`);
    out.push('\t}');
  }
  for (const chain of spec.chains) {
    out.push(`\tchain ${chain.name} {`, `\t\t${chain.head}`, ...chain.rules.map((r) => `\t\t${r}`), '\t}');
  }
  out.push('}');
  return out.join('\n') + '\n';
}

/** What a listing must show: set names with their elements, chain names with their rule counts. */
function shapeOfSpec(spec: TableSpec): string {
  return [
    ...spec.sets.map((s) => `set ${s.name} ${[...s.elements].sort().join(',')}`),
    ...spec.chains.map((c) => `chain ${c.name} ${c.rules.length}`),
  ].sort().join('\n');
}

/** The same shape from `nft -j list table`, so a deleted rule, chain or set element is noticed. */
export function shapeOfListing(json: unknown): string {
  const items = ((json as { nftables?: unknown[] })?.nftables ?? []) as Record<string, Record<string, unknown>>[];
  const chains = new Map<string, number>();
  const lines: string[] = [];
  for (const item of items) {
    if (item.set) {
      const elems = (Array.isArray(item.set.elem) ? item.set.elem : []).map((e) => {
        try {
          return IP.parse(String(e)).toString();
        } catch {
          return JSON.stringify(e);
        }
      });
      lines.push(`set ${String(item.set.name)} ${elems.sort().join(',')}`);
    } else if (item.chain) {
      chains.set(String(item.chain.name), chains.get(String(item.chain.name)) ?? 0);
    } else if (item.rule) {
      const name = String(item.rule.chain);
      chains.set(name, (chains.get(name) ?? 0) + 1);
    }
  }
  for (const [name, n] of chains) lines.push(`chain ${name} ${n}`);
  return lines.sort().join('\n');
}

/** Deletes the table in one transaction, whether or not it exists. */
const REMOVE_TEXT = `table ${WEFT_NFT_TABLE}\ndelete table ${WEFT_NFT_TABLE}\n`;

export interface NftTableOptions {
  logger: Logger;
  /** Network namespace to program (through `ip netns exec`); default: the current one. */
  netns?: string;
  /** How often the table is checked and restored (default 10 s). */
  resyncMs?: number;
  /** Called once per nft process started (tests count them). */
  onSpawn?: (args: readonly string[]) => void;
}

interface NftRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Keeps weft's table equal to the last rules given. */
export class NftTable {
  private readonly logger: Logger;
  private readonly netns?: string;
  private readonly resyncMs: number;
  private readonly onSpawn?: (args: readonly string[]) => void;
  private wanted?: { text: string; shape: string };
  /** Text of the last successful write. */
  private written?: string;
  private readonly chain = new SerialQueue();
  private timer?: NodeJS.Timeout;
  private lastError?: string;

  constructor(opts: NftTableOptions) {
    this.logger = opts.logger;
    if (opts.netns !== undefined) this.netns = opts.netns;
    this.resyncMs = opts.resyncMs ?? 10_000;
    if (opts.onSpawn) this.onSpawn = opts.onSpawn;
  }

  private nft(args: string[], input?: string): Promise<NftRun> {
    this.onSpawn?.(this.netns ? ['netns', 'exec', this.netns, 'nft', ...args] : args);
    return runCommand(['nft', ...args], { ...(this.netns !== undefined ? { netns: this.netns } : {}), input: input ?? '', check: false });
  }

  private failure(what: string, res: NftRun): Error {
    const text = res.stderr.trim().split('\n')[0] || `exit code ${res.code}`;
    return userCause('nft', res.stderr, this.netns) ?? new Error(`nft ${what}: ${text}`);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    return this.chain.run(fn);
  }

  private async write(text: string): Promise<void> {
    this.written = undefined;
    const res = await this.nft(['-f', '-'], text);
    if (res.code !== 0) throw this.failure('-f', res);
    this.written = text;
  }

  /** The table's shape as the kernel holds it, or undefined when it does not exist. */
  private async shape(): Promise<string | undefined> {
    const res = await this.nft(['-j', 'list', 'table', ...WEFT_NFT_TABLE.split(' ')]);
    if (res.code === 0) return shapeOfListing(JSON.parse(res.stdout));
    if (/No such file or directory/.test(res.stderr)) return undefined;
    throw this.failure('list table', res);
  }

  /** Makes the table hold exactly `rules` (one atomic transaction; nothing when unchanged). Rejects on errors. */
  apply(rules: NftRules): Promise<{ written: boolean }> {
    const spec = tableSpec(rules);
    const text = nftRuleset(rules);
    return this.serial(async () => {
      this.wanted = { text, shape: shapeOfSpec(spec) };
      if (text === this.written) return { written: false };
      try {
        await this.write(text);
      } catch (err) {
        this.lastError = oneLine(err);
        throw err;
      }
      this.lastError = undefined;
      return { written: true };
    });
  }

  /** Why the table is not as wanted (the last write or restore failed), undefined when it is. */
  get error(): string | undefined {
    return this.lastError;
  }

  /** Restores the table if it was deleted or changed since weft wrote it (or the last write failed). */
  check(): Promise<{ restored: boolean }> {
    return this.serial(async () => {
      const wanted = this.wanted;
      if (!wanted) return { restored: false };
      const now = this.written === wanted.text ? await this.shape() : undefined;
      if (now === wanted.shape) return { restored: false };
      if (this.written === wanted.text) {
        this.logger.warn({ table: WEFT_NFT_TABLE }, now === undefined
          ? 'nftables table weft was deleted; restoring it'
          : 'nftables table weft was changed outside weft; rewriting it');
      }
      await this.write(wanted.text);
      return { restored: true };
    });
  }

  /** Checks the table every `resyncMs` until `signal` aborts or stop() is called; errors are logged once each. */
  start(signal?: AbortSignal): void {
    if (this.timer || signal?.aborted) return;
    this.timer = setInterval(() => {
      this.check().then(() => {
        if (this.lastError) this.logger.info('nftables table weft is in place again');
        this.lastError = undefined;
      }, (err: unknown) => {
        const text = oneLine(err);
        if (text !== this.lastError) this.logger.error({ err: text }, 'cannot restore the nftables table weft; retrying');
        this.lastError = text;
      });
    }, this.resyncMs);
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.chain.idle();
  }

  /** Stops checking and deletes the table (fine if it is already gone). */
  async remove(): Promise<void> {
    await this.stop();
    await this.serial(async () => {
      this.wanted = undefined;
      this.written = undefined;
      const res = await this.nft(['-f', '-'], REMOVE_TEXT);
      if (res.code !== 0) throw this.failure('delete table', res);
    });
  }
}
