// NetworkPolicy (networking.k8s.io/v1) compiled to nftables, as a pure
// function of the cluster picture. The layout keys only on pod addresses, so
// it is the same on every backend:
//
//   policy_egress  (forward hook, priority filter - 5)   policy_ingress (filter - 4)
//     ct state established,related accept                 ct state established,related accept
//     ip saddr vmap @egress4 / ip6 ... @egress6            ip daddr vmap @ingress4 / ...6
//                │ local isolated pod -> jump its chain                │
//   e<hash>: ip daddr @s<hash> meta l4proto tcp th dport 80 accept ... drop
//
// A pod chain's accept ends only the base chain it was jumped from, so
// traffic egress allows still meets the destination's ingress chain. Pod and
// set names are hashes of their contents: pods with the same rules share a
// chain, rules with the same peers share a set, hostile API names never reach
// the nft text, and a pod's fingerprint (its two chain names) changes exactly
// when what decides its traffic changes. Peer addresses are intervals merged
// here (ipBlock minus except, plus pod addresses), one set per rule, peer
// group and family, never a rule per pod pair.
import { createHash } from 'node:crypto';
import { IP, type Family } from '../core/cidr.js';
import type { NftChain, NftSet, NftVerdictMap, PolicyNft } from '../dataplane/nft.js';
import { mergeRanges, rangeText, type Range } from './intervals.js';
import { matchesSelector } from './selector.js';
import { PolicyReader, namedPort, type Direction, type Policy, type PortEntry, type Protocol, type Rule } from './spec.js';
import type { PodInfo, PolicyWorld } from './types.js';

export interface PolicyProblem {
  /** namespace/name of the policy. */
  policy: string;
  /** One line: the field, what is wrong, the fix. */
  reason: string;
}

export interface PolicyStats {
  /** Policies whose podSelector is valid (the ones enforced). */
  policies: number;
  /** Pods on this node isolated in at least one direction. */
  isolatedPods: number;
  chains: number;
  rules: number;
  sets: number;
  setElements: number;
  maps: number;
  mapElements: number;
}

export interface CompiledPolicy {
  /** What goes in weft's table (empty when no pod on this node is isolated). */
  nft: PolicyNft;
  /** Each address of each isolated pod on this node -> a fingerprint of the rules deciding its traffic, both directions. */
  podRules: Map<string, string>;
  problems: PolicyProblem[];
  stats: PolicyStats;
}

export interface CompileOptions {
  /** Enforce for the pods on this node only. */
  nodeName: string;
  /** The address families the node runs; addresses of others are left out. */
  families: readonly Family[];
}

const hash = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, 16);

/** Ports a rule allows, by protocol: 'all' ports of it, or merged ranges. */
type PortMatch = Map<Protocol, 'all' | [number, number][]>;

/** The entries' ports, named ones resolved on `pod` (a name it lacks matches nothing). */
function resolvePorts(entries: readonly PortEntry[], pod: PodInfo | undefined): PortMatch {
  const out: PortMatch = new Map();
  for (const e of entries) {
    let range: [number, number] | undefined;
    if (typeof e.port === 'number') range = [e.port, e.endPort ?? e.port];
    else if (typeof e.port === 'string') {
      const found = namedPort(pod, e);
      if (found === undefined) continue;
      range = [found, found];
    }
    const had = out.get(e.protocol);
    if (had === 'all') continue;
    out.set(e.protocol, range ? [...(had ?? []), range] : 'all');
  }
  return out;
}

/** One nft match per protocol ("meta l4proto tcp th dport { 80, 8000-9000 }"); none when nothing matches. */
function portClauses(match: PortMatch): string[] {
  return (['tcp', 'udp', 'sctp'] as const).flatMap((proto) => {
    const ports = match.get(proto);
    if (ports === undefined) return [];
    if (ports === 'all') return [`meta l4proto ${proto}`];
    const items = mergeRanges(ports).map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`));
    return [`meta l4proto ${proto} th dport ${items.length === 1 ? items[0] : `{ ${items.join(', ')} }`}`];
  });
}

/** Addresses per family, or every address. */
type Addresses = 'all' | Map<Family, Range[]>;

/** Compiles the world into this node's rules. Pure: same world, same text. */
export function compilePolicies(world: PolicyWorld, opts: CompileOptions): CompiledPolicy {
  const families = [...new Set(opts.families)].sort();
  const problems: PolicyProblem[] = [];
  const byName = (a: { namespace: string; name: string }, b: { namespace: string; name: string }): number =>
    a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;

  // Pods with their parsed addresses of the node's families.
  const pods = [...world.pods].sort(byName).map((pod) => ({
    pod,
    addrs: pod.ips.flatMap((text) => {
      try {
        const ip = IP.parse(text);
        return families.includes(ip.family) ? [ip] : [];
      } catch {
        return [];
      }
    }),
  }));
  const podsByNs = new Map<string, typeof pods>();
  for (const p of pods) {
    const list = podsByNs.get(p.pod.namespace);
    if (list) list.push(p);
    else podsByNs.set(p.pod.namespace, [p]);
  }
  const nsLabels = new Map(world.namespaces.map((n) => [n.name, n.labels]));
  const allNamespaces = [...new Set([...nsLabels.keys(), ...podsByNs.keys()])].sort();

  const policies: Policy[] = [];
  for (const obj of [...world.policies].sort(byName)) {
    const reader = new PolicyReader();
    const policy = reader.read(obj.namespace, obj.spec);
    for (const reason of reader.problems) problems.push({ policy: `${obj.namespace}/${obj.name}`, reason });
    if (policy) policies.push(policy);
  }

  // The pods a peer list names (the policy's namespace for a bare podSelector) and its ipBlock intervals.
  const peerCache = new Map<Rule, { pods: typeof pods; blocks: Map<Family, Range[]> }>();
  const peersOf = (rule: Rule, namespace: string): { pods: typeof pods; blocks: Map<Family, Range[]> } => {
    let hit = peerCache.get(rule);
    if (hit) return hit;
    const chosen = new Set<(typeof pods)[number]>();
    const blocks = new Map<Family, Range[]>();
    if (rule.peers === 'all') {
      pods.forEach((p) => chosen.add(p));
    } else {
      for (const peer of rule.peers) {
        if (peer.kind === 'block') {
          if (families.includes(peer.family)) blocks.set(peer.family, [...(blocks.get(peer.family) ?? []), ...peer.ranges]);
          continue;
        }
        const nss = peer.namespaces
          ? allNamespaces.filter((ns) => matchesSelector(peer.namespaces!, nsLabels.get(ns) ?? {}))
          : [namespace];
        for (const ns of nss) {
          for (const p of podsByNs.get(ns) ?? []) if (!peer.pods || matchesSelector(peer.pods, p.pod.labels)) chosen.add(p);
        }
      }
    }
    hit = { pods: pods.filter((p) => chosen.has(p)), blocks };
    peerCache.set(rule, hit);
    return hit;
  };

  // A pod address is in many sets: its text is made once.
  const addressTexts: Record<Family, Map<bigint, string>> = { 4: new Map(), 6: new Map() };
  const elementText = (family: Family, range: Range): string => {
    if (range[0] !== range[1]) return rangeText(family, range);
    const known = addressTexts[family].get(range[0]);
    if (known !== undefined) return known;
    const text = rangeText(family, range);
    addressTexts[family].set(range[0], text);
    return text;
  };
  const sets = new Map<string, NftSet>();
  /** The set holding these addresses (shared by every rule naming the same ones). */
  const setFor = (family: Family, ranges: Range[]): string => {
    const merged = mergeRanges(ranges);
    // Named by the numbers, rendered as text only once per distinct set: address text is the costly part.
    const name = `s${hash(`${family} ${merged.map(([lo, hi]) => `${lo}-${hi}`).join(',')}`)}`;
    if (!sets.has(name)) {
      sets.set(name, { name, type: family === 4 ? 'ipv4_addr' : 'ipv6_addr', interval: true, elements: merged.map((r) => elementText(family, r)) });
    }
    return name;
  };
  const addressesOf = (group: typeof pods, blocks: Map<Family, Range[]>): Map<Family, Range[]> => {
    const out = new Map<Family, Range[]>();
    for (const f of families) out.set(f, [...(blocks.get(f) ?? [])]);
    for (const { addrs } of group) for (const ip of addrs) out.get(ip.family)!.push([ip.value, ip.value]);
    return out;
  };
  /** The address matches of a rule, one per family with addresses (none: the rule matches nothing). */
  const addressMatches = (dir: Direction, addrs: Addresses): string[] => {
    if (addrs === 'all') return [''];
    const field = dir === 'ingress' ? 'saddr' : 'daddr';
    return families.flatMap((f) => {
      const ranges = addrs.get(f) ?? [];
      return ranges.length ? [`${f === 4 ? 'ip' : 'ip6'} ${field} @${setFor(f, ranges)} `] : [];
    });
  };
  /** nft rules accepting `ports` with each address match. */
  const ruleTexts = (matches: string[], ports: 'all' | PortMatch): string[] => {
    const portParts = ports === 'all' ? [''] : portClauses(ports).map((c) => `${c} `);
    return matches.flatMap((a) => portParts.map((p) => `${a}${p}accept`));
  };

  // Egress rules do not depend on the pod they isolate: compiled once each.
  const egressCache = new Map<Rule, string[]>();
  const egressRule = (rule: Rule, namespace: string): string[] => {
    let hit = egressCache.get(rule);
    if (hit) return hit;
    const { pods: group, blocks } = peersOf(rule, namespace);
    const everyone = rule.peers === 'all';
    const matches = (): string[] => addressMatches('egress', everyone ? 'all' : addressesOf(group, blocks));
    if (rule.ports === 'all') {
      hit = ruleTexts(matches(), 'all');
    } else {
      // Numeric ports hold for every destination; a named port only for the pods it resolves on, grouped by what it resolves to.
      const numeric = rule.ports.filter((e) => typeof e.port !== 'string');
      const named = rule.ports.filter((e) => typeof e.port === 'string');
      hit = numeric.length ? ruleTexts(matches(), resolvePorts(numeric, undefined)) : [];
      if (named.length) {
        const byPorts = new Map<string, { match: PortMatch; pods: typeof pods }>();
        for (const p of group) {
          // What each name resolves to on this pod: pods with the same answers share a set.
          const key = named.map((e) => namedPort(p.pod, e) ?? '-').join(',');
          if (/^[-,]*$/.test(key)) continue;
          const match = byPorts.get(key)?.match ?? resolvePorts(named, p.pod);
          const g = byPorts.get(key) ?? { match, pods: [] };
          g.pods.push(p);
          byPorts.set(key, g);
        }
        const ordered = [...byPorts.values()].map((g) => ({ ...g, clauses: portClauses(g.match).join(';') }));
        for (const g of ordered.sort((a, b) => (a.clauses < b.clauses ? -1 : a.clauses > b.clauses ? 1 : 0))) {
          hit.push(...ruleTexts(addressMatches('egress', addressesOf(g.pods, new Map())), g.match));
        }
      }
    }
    egressCache.set(rule, hit);
    return hit;
  };
  // Ingress rules: the peers once per rule, the ports per pod (named ports resolve on the pod the rule protects).
  const ingressCache = new Map<Rule, string[]>();
  const ingressRule = (rule: Rule, namespace: string, target: PodInfo): string[] => {
    let matches = ingressCache.get(rule);
    if (!matches) {
      const { pods: group, blocks } = peersOf(rule, namespace);
      matches = addressMatches('ingress', rule.peers === 'all' ? 'all' : addressesOf(group, blocks));
      ingressCache.set(rule, matches);
    }
    return ruleTexts(matches, rule.ports === 'all' ? 'all' : resolvePorts(rule.ports, target));
  };

  const chains = new Map<string, NftChain>();
  const maps = new Map<string, NftVerdictMap>();
  for (const dir of ['egress', 'ingress'] as const) for (const f of families) maps.set(`${dir}${f}`, { name: `${dir}${f}`, type: f === 4 ? 'ipv4_addr' : 'ipv6_addr', elements: [] });
  const podRules = new Map<string, string>();
  const isolated = { egress: false, ingress: false };
  let isolatedPods = 0;
  const seen = new Set<string>();
  for (const { pod, addrs } of pods) {
    if (pod.nodeName !== opts.nodeName) continue;
    // Two pods claiming one address (a stale one): the first by name decides, deterministically.
    const own = addrs.filter((ip) => !seen.has(ip.toString()));
    if (!own.length) continue;
    const chainOf: Record<Direction, string | undefined> = { egress: undefined, ingress: undefined };
    for (const dir of ['egress', 'ingress'] as const) {
      const selecting = policies.filter((p) => p[dir] && p.namespace === pod.namespace && matchesSelector(p.selector, pod.labels));
      if (!selecting.length) continue;
      const rules = [...new Set(selecting.flatMap((p) => p[dir]!.flatMap((r) => (dir === 'egress' ? egressRule(r, p.namespace) : ingressRule(r, p.namespace, pod)))))];
      rules.push('drop');
      const name = `${dir[0]}${hash(rules.join('\n'))}`;
      if (!chains.has(name)) chains.set(name, { name, rules });
      chainOf[dir] = name;
      isolated[dir] = true;
    }
    if (!chainOf.egress && !chainOf.ingress) continue;
    isolatedPods++;
    const fingerprint = `${chainOf.egress ?? '-'} ${chainOf.ingress ?? '-'}`;
    for (const ip of own) {
      seen.add(ip.toString());
      podRules.set(ip.toString(), fingerprint);
      for (const dir of ['egress', 'ingress'] as const) {
        const chain = chainOf[dir];
        if (chain) maps.get(`${dir}${ip.family}`)!.elements.push({ key: ip.toString(), verdict: `jump ${chain}` });
      }
    }
  }

  const nft: PolicyNft = { sets: [], maps: [], chains: [] };
  if (isolated.egress || isolated.ingress) {
    nft.sets = [...sets.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
    nft.chains = [...chains.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const dir of ['egress', 'ingress'] as const) {
      if (!isolated[dir]) continue;
      const field = dir === 'egress' ? 'saddr' : 'daddr';
      for (const f of families) nft.maps.push(maps.get(`${dir}${f}`)!);
      nft.chains.push({
        name: `policy_${dir}`,
        // Egress first: its accept ends only this chain, and the destination's ingress chain still runs.
        head: `type filter hook forward priority filter - ${dir === 'egress' ? 5 : 4}; policy accept;`,
        rules: ['ct state established,related accept', ...families.map((f) => `${f === 4 ? 'ip' : 'ip6'} ${field} vmap @${dir}${f}`)],
      });
    }
  }
  const count = <T>(xs: T[], n: (x: T) => number): number => xs.reduce((sum, x) => sum + n(x), 0);
  return {
    nft,
    podRules,
    problems,
    stats: {
      policies: policies.length,
      isolatedPods,
      chains: nft.chains.length,
      rules: count(nft.chains, (c) => c.rules.length),
      sets: nft.sets.length,
      setElements: count(nft.sets, (s) => s.elements.length),
      maps: nft.maps.length,
      mapElements: count(nft.maps, (m) => m.elements.length),
    },
  };
}

/**
 * Addresses of this node's pods whose conntrack entries must go: the rules
 * deciding their traffic changed, or they just became isolated. Connections
 * still allowed are picked up again by conntrack and pass.
 */
export function podsToFlush(prev: CompiledPolicy | undefined, next: CompiledPolicy): string[] {
  return [...next.podRules].filter(([ip, fp]) => prev?.podRules.get(ip) !== fp).map(([ip]) => ip).sort();
}
