// weft's one nftables table: the VXLAN port locked to peers, pod masquerade,
// forwarding of the cluster Network, and NetworkPolicy's sets, verdict maps
// and chains (built elsewhere). The whole table is generated as text by
// a pure function and swapped atomically (declare, delete, define in one
// `nft -f -` transaction), and rewritten if someone deletes or edits it.
import type { Logger } from 'pino';
import { runCommand, userCause } from '../core/command.js';
import { SerialQueue } from '../core/serial-queue.js';
import { oneLine } from '../errors.js';
import { Cidr, IP, type Family } from '../core/cidr.js';

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
  /** NetworkPolicy enforcement: its sets, verdict maps and chains, added to the table as given. */
  policy?: PolicyNft;
}

/**
 * A named set of addresses. With `interval`, elements may also be prefixes
 * ("10.0.0.0/24") and ranges ("10.0.0.1-10.0.0.9"); they must be disjoint
 * and not adjacent (there is no auto-merge), so the kernel lists back as many
 * elements as were written.
 */
export interface NftSet {
  name: string;
  type: 'ipv4_addr' | 'ipv6_addr';
  interval?: boolean;
  elements: string[];
}

/** A verdict map from an address to a verdict ("jump chain", "accept", "drop"), used as `ip saddr vmap @name`. */
export interface NftVerdictMap {
  name: string;
  type: 'ipv4_addr' | 'ipv6_addr';
  elements: { key: string; verdict: string }[];
}

/** A chain: a base chain when `head` is given ("type filter hook forward priority filter - 5; policy accept;"), else one reached by jump. */
export interface NftChain {
  name: string;
  head?: string;
  rules: string[];
}

/** What NetworkPolicy adds to the table (policy/compile.ts builds it; nothing here knows policy). */
export interface PolicyNft {
  sets: NftSet[];
  maps: NftVerdictMap[];
  chains: NftChain[];
}

const cidr = (text: string, what: string): Cidr => {
  try {
    return Cidr.parse(text);
  } catch (err) {
    throw new Error(`nft: ${what}: ${oneLine(err)}`);
  }
};
const ipMatch = (c: Cidr): string => (c.family === 4 ? 'ip' : 'ip6');

/** The table's contents: sets, verdict maps and chains with their rules, in order. */
interface TableSpec {
  sets: NftSet[];
  maps: NftVerdictMap[];
  chains: NftChain[];
}

const NFT_NAME = /^[A-Za-z][A-Za-z0-9_]{0,30}$/;
const VERDICT = /^(?:(?:jump|goto) ([A-Za-z][A-Za-z0-9_]{0,30})|accept|drop|return)$/;

/** An element of an address set or map key as [first, last] address: "a", "a/len" or "a-b". */
function elementRange(text: string): [IP, IP] {
  const dash = text.indexOf('-');
  if (dash >= 0) {
    const first = IP.parse(text.slice(0, dash));
    const last = IP.parse(text.slice(dash + 1));
    if (first.family !== last.family || first.value > last.value) throw new Error(`"${text.slice(0, 64)}" is not a range from low to high`);
    return [first, last];
  }
  if (text.includes('/')) {
    const c = Cidr.parse(text);
    return [c.ip, c.last];
  }
  const ip = IP.parse(text);
  return [ip, ip];
}

/** One text per element whatever its spelling: an address alone, else "first-last". */
function elementShape(text: string): string {
  const [first, last] = elementRange(text);
  return first.equals(last) ? first.toString() : `${first}-${last}`;
}

/** Checks what the policy compiler gives before it becomes nft text: names, verdicts, elements, one-line rules. */
function checkPolicy(policy: PolicyNft, taken: Set<string>): void {
  const name = (n: string, what: string): void => {
    if (!NFT_NAME.test(n)) throw new Error(`nft: ${what} name ${JSON.stringify(n).slice(0, 64)} is not 1-31 letters, digits or _`);
    if (taken.has(`${what} ${n}`)) throw new Error(`nft: two ${what}s named ${n}`);
    taken.add(`${what} ${n}`);
  };
  const family = (type: string): Family => (type === 'ipv4_addr' ? 4 : 6);
  const element = (text: string, type: string, interval: boolean, where: string): void => {
    let range: [IP, IP];
    try {
      range = elementRange(text);
    } catch (err) {
      throw new Error(`nft: ${where}: ${oneLine(err)}`);
    }
    if (range[0].family !== family(type)) throw new Error(`nft: ${where}: ${text} is not an ${type}`);
    if (!interval && !range[0].equals(range[1])) throw new Error(`nft: ${where}: ${text} needs an interval set`);
  };
  for (const set of policy.sets) {
    name(set.name, 'set');
    for (const e of set.elements) element(e, set.type, set.interval === true, `set ${set.name}`);
  }
  const chains = new Set(policy.chains.map((c) => c.name));
  for (const map of policy.maps) {
    name(map.name, 'set');
    for (const e of map.elements) {
      element(e.key, map.type, false, `map ${map.name}`);
      const target = VERDICT.exec(e.verdict);
      if (!target) throw new Error(`nft: map ${map.name}: ${JSON.stringify(e.verdict).slice(0, 64)} is not a verdict`);
      if (target[1] !== undefined && !chains.has(target[1])) throw new Error(`nft: map ${map.name}: no chain ${target[1]}`);
    }
  }
  for (const chain of policy.chains) {
    name(chain.name, 'chain');
    // One statement per rule: a ';' would start a second one (the head needs its own).
    if (/[\n\r#]/.test(chain.head ?? '') || chain.rules.some((r) => /[\n\r#;]/.test(r))) {
      throw new Error(`nft: chain ${chain.name}: a rule spans lines, holds a second statement or a comment`);
    }
  }
}

function tableSpec(rules: NftRules): TableSpec {
  const spec: TableSpec = { sets: [], maps: [], chains: [] };
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
  if (rules.policy) {
    checkPolicy(rules.policy, new Set([...spec.sets.map((s) => `set ${s.name}`), ...spec.chains.map((c) => `chain ${c.name}`)]));
    spec.sets.push(...rules.policy.sets);
    spec.maps.push(...rules.policy.maps);
    spec.chains.push(...rules.policy.chains);
  }
  return spec;
}

/** The complete transaction text for `nft -f -`: replaces the table atomically, whatever it held. */
export function nftRuleset(rules: NftRules): string {
  const spec = tableSpec(rules);
  const out = [`table ${WEFT_NFT_TABLE}`, `delete table ${WEFT_NFT_TABLE}`, `table ${WEFT_NFT_TABLE} {`];
  for (const set of spec.sets) {
    out.push(`\tset ${set.name} {`, `\t\ttype ${set.type}`);
    if (set.interval) out.push('\t\tflags interval');
    if (set.elements.length) out.push(`\t\telements = { ${set.elements.join(', ')} }`);
    out.push('\t}');
  }
  const chain = (c: NftChain): void => {
    out.push(`\tchain ${c.name} {`, ...(c.head ? [`\t\t${c.head}`] : []), ...c.rules.map((r) => `\t\t${r}`), '\t}');
  };
  // Chains a map jumps to come before the map, the maps before the base chains that use them.
  spec.chains.filter((c) => !c.head).forEach(chain);
  for (const map of spec.maps) {
    out.push(`\tmap ${map.name} {`, `\t\ttype ${map.type} : verdict`);
    if (map.elements.length) out.push(`\t\telements = { ${map.elements.map((e) => `${e.key} : ${e.verdict}`).join(', ')} }`);
    out.push('\t}');
  }
  spec.chains.filter((c) => c.head).forEach(chain);
  out.push('}');
  return out.join('\n') + '\n';
}

/** What a listing must show: set names with their elements, maps with theirs, chain names with their rule counts. */
function shapeOfSpec(spec: TableSpec): string {
  return [
    ...spec.sets.map((s) => `set ${s.name} ${s.elements.map(elementShape).sort().join(',')}`),
    ...spec.maps.map((m) => `map ${m.name} ${m.elements.map((e) => `${elementShape(e.key)}>${e.verdict}`).sort().join(',')}`),
    ...spec.chains.map((c) => `chain ${c.name} ${c.rules.length}`),
  ].sort().join('\n');
}

/** A set element or map key as `nft -j` lists it ("a", {prefix: {addr, len}}, {range: [a, b]}), in elementShape's form. */
function listedElement(e: unknown): string {
  try {
    if (typeof e === 'string') return elementShape(e);
    const o = e as { prefix?: { addr?: unknown; len?: unknown }; range?: unknown[] };
    if (o.prefix) return elementShape(`${String(o.prefix.addr)}/${String(o.prefix.len)}`);
    if (Array.isArray(o.range)) return elementShape(`${String(o.range[0])}-${String(o.range[1])}`);
  } catch {
    // Not an address: compared as JSON below, which never equals a wanted element.
  }
  return JSON.stringify(e);
}

/** A verdict as `nft -j` lists it ({jump: {target}}, {accept: null}) in the text form the map was written with. */
function listedVerdict(v: unknown): string {
  const [kind, arg] = Object.entries((v ?? {}) as Record<string, unknown>)[0] ?? ['?', undefined];
  const target = (arg as { target?: unknown } | null)?.target;
  return target === undefined ? kind : `${kind} ${String(target)}`;
}

/** The same shape from `nft -j list table`, so a deleted rule, chain or set element is noticed. */
export function shapeOfListing(json: unknown): string {
  const items = ((json as { nftables?: unknown[] })?.nftables ?? []) as Record<string, Record<string, unknown>>[];
  const chains = new Map<string, number>();
  const lines: string[] = [];
  for (const item of items) {
    if (item.set) {
      const elems = (Array.isArray(item.set.elem) ? item.set.elem : []).map(listedElement);
      lines.push(`set ${String(item.set.name)} ${elems.sort().join(',')}`);
    } else if (item.map) {
      const elems = (Array.isArray(item.map.elem) ? item.map.elem : []).map((e: unknown) => {
        const [key, verdict] = Array.isArray(e) ? e : [e, undefined];
        return `${listedElement(key)}>${listedVerdict(verdict)}`;
      });
      lines.push(`map ${String(item.map.name)} ${elems.sort().join(',')}`);
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
