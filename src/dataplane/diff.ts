// The pure half of the reconciler: kernel snapshot + checked desired state ->
// the smallest ordered list of typed kernel changes, grouped into processes.
// No I/O and no command syntax (the kernel adapter renders each change), so
// every rule (ownership, ordering, no-flap, idempotence) is unit-tested without root.
import { familyOf, normaliseDesired, type DesiredRoute, type VxlanTunnel } from './desired-check.js';
import { WEFT_LINK_PREFIX, type Addr, type DesiredState, type Fdb, type Neigh } from './state.js';

/** A link as the kernel reports it (only the fields the diff compares). */
export interface KernelLink {
  name: string;
  /** `linkinfo.info_kind` ("vxlan", "tun", "veth", ...); absent for plain devices. */
  kind?: string;
  mtu: number;
  mac?: string;
  up: boolean;
  vxlan?: { vni: number; port: number; local?: string; dev?: string; learning: boolean };
}

/** A main-table route, normalised: dst is always a CIDR ("default" never appears). */
export interface KernelRoute {
  dst: string;
  via?: string;
  dev?: string;
  onlink: boolean;
  /** Carries proto 147, i.e. weft installed it. */
  owned: boolean;
  metric?: number;
}

/** What the kernel holds. Addresses are global-scope "ip/len"; neighbours permanent; FDB entries with a remote. */
export interface KernelSnapshot {
  links: KernelLink[];
  addrs: Addr[];
  routes: KernelRoute[];
  neighs: Neigh[];
  fdb: Fdb[];
}

export type Tool = 'ip' | 'bridge';

/**
 * One kernel change, as data. `add` makes an entry exist as given (written
 * with iproute2's idempotent `replace`), `set` changes a link in place, `del`
 * removes. `dev` is the device the change acts on, when it has one; a vxlan
 * link added with `mtu` 0 keeps the kernel's default.
 */
export type Op =
  | { target: 'link'; action: 'add'; dev: string; mtu: number; mac?: string; tunnel: VxlanTunnel }
  | { target: 'link'; action: 'set'; dev: string; mtu?: number; mac?: string; up?: true }
  | { target: 'link'; action: 'del'; dev: string }
  | ({ target: 'addr'; action: 'add' | 'del' } & Addr)
  | ({ target: 'neigh'; action: 'add' | 'del' } & Neigh)
  | ({ target: 'fdb'; action: 'add' | 'del' } & Fdb)
  | ({ target: 'route'; action: 'add' } & DesiredRoute)
  | { target: 'route'; action: 'del'; dst: string; dev?: string; metric?: number };

/** The program that applies an op: FDB entries are `bridge`'s, everything else `ip`'s. */
export function toolOf(op: Op): Tool {
  return op.target === 'fdb' ? 'bridge' : 'ip';
}

export interface Plan {
  /**
   * Make before break, in dependency order: links recreated with another spec
   * are removed first; then link, addr, neigh, fdb and route additions (a
   * route is replaced in place); then route, neigh, addr and link removals,
   * and FDB removals last. A peer whose route moves (say from a VXLAN device
   * to the underlay) never has a moment with neither way to reach it.
   */
  ops: Op[];
  /** Desired route destinations held by a route weft does not own; left alone. */
  conflicts: string[];
  /** Desired TUN links that do not exist (yet): the udp backend opens them. */
  missingLinks: string[];
  /** Desired entries refused as malformed or outside weft's ownership, one line each. */
  rejected: string[];
}

/** One process: consecutive ops for the same tool. */
export interface Batch {
  tool: Tool;
  ops: Op[];
}

export interface PlanOptions {
  /** Also remove weft TUN links (teardown); normally only the udp backend's loop owns them. */
  removeTunLinks?: boolean;
  linkPrefix?: string;
}

/** The metric a route gets when none is given: 0 for IPv4, 1024 for IPv6. */
function defaultMetric(dst: string): number {
  return familyOf(dst) === 6 ? 1024 : 0;
}

function sameRoute(k: KernelRoute, d: DesiredRoute): boolean {
  return k.via === d.via && (d.dev === undefined || k.dev === d.dev) && k.onlink === d.onlink;
}

/**
 * The smallest change that takes the kernel to the desired state, touching
 * only what weft owns: proto-147 routes, and links named with the weft prefix
 * (with their addresses, permanent neighbours and FDB entries).
 */
export function planChanges(kernel: KernelSnapshot, desired: DesiredState, opts: PlanOptions = {}): Plan {
  const prefix = opts.linkPrefix ?? WEFT_LINK_PREFIX;
  const rejected: string[] = [];
  const w = normaliseDesired(desired, prefix, rejected);
  const missingLinks: string[] = [];
  const conflicts: string[] = [];

  const relinkDel: Op[] = [];
  const linkDel: Op[] = [];
  const linkAdd: Op[] = [];
  const linkSet: Op[] = [];
  const kLinks = new Map(kernel.links.map((l) => [l.name, l]));
  // Links created in this batch start empty; links removed take their entries with them.
  const fresh = new Set<string>();
  const gone = new Set<string>();
  const setLink = (name: string, k: KernelLink, mtu: number, mac?: string): void => {
    const change = {
      ...(mtu && k.mtu !== mtu ? { mtu } : {}),
      ...(mac && k.mac !== mac ? { mac } : {}),
      ...(k.up ? {} : { up: true as const }),
    };
    if (Object.keys(change).length) linkSet.push({ target: 'link', action: 'set', dev: name, ...change });
  };

  for (const v of w.vxlan.values()) {
    const k = kLinks.get(v.name);
    const { tunnel } = v;
    const same = k?.kind === 'vxlan' && k.vxlan !== undefined && k.vxlan.vni === tunnel.vni && k.vxlan.port === tunnel.port
      && k.vxlan.local === tunnel.local && k.vxlan.dev === tunnel.dev && !k.vxlan.learning;
    if (k && same) {
      setLink(v.name, k, v.mtu, v.mac);
      continue;
    }
    if (k) {
      relinkDel.push({ target: 'link', action: 'del', dev: v.name });
      gone.add(v.name);
    }
    fresh.add(v.name);
    linkAdd.push({ target: 'link', action: 'add', dev: v.name, mtu: v.mtu, ...(v.mac ? { mac: v.mac } : {}), tunnel });
    linkSet.push({ target: 'link', action: 'set', dev: v.name, up: true });
  }
  for (const t of w.tun.values()) {
    const k = kLinks.get(t.name);
    if (k?.kind === 'tun') setLink(t.name, k, t.mtu);
    else missingLinks.push(t.name);
  }
  for (const k of kernel.links) {
    if (!k.name.startsWith(prefix) || w.vxlan.has(k.name) || w.tun.has(k.name)) continue;
    if (k.kind === 'vxlan' || (k.kind === 'tun' && opts.removeTunLinks)) {
      linkDel.push({ target: 'link', action: 'del', dev: k.name });
      gone.add(k.name);
    }
  }

  // Devices whose entries weft manages after this batch, and whose current entries count.
  const usable = (dev: string): boolean => w.vxlan.has(dev) || (w.tun.has(dev) && !missingLinks.includes(dev));
  const current = (dev: string): boolean => usable(dev) && !fresh.has(dev);

  const addrDel: Op[] = [];
  const addrAdd: Op[] = [];
  const kAddrs = new Set<string>();
  for (const a of kernel.addrs) {
    if (!current(a.dev)) continue;
    const key = `${a.dev}|${a.cidr}`;
    kAddrs.add(key);
    if (!w.addrs.has(key)) addrDel.push({ target: 'addr', action: 'del', ...a });
  }
  for (const [key, a] of w.addrs) {
    if (!usable(a.dev) || kAddrs.has(key)) continue;
    addrAdd.push({ target: 'addr', action: 'add', ...a });
  }

  const neighDel: Op[] = [];
  const neighAdd: Op[] = [];
  const kNeighs = new Map<string, Neigh>();
  for (const n of kernel.neighs) {
    if (!current(n.dev)) continue;
    const key = `${n.dev}|${n.ip}`;
    kNeighs.set(key, n);
    if (!w.neighs.has(key)) neighDel.push({ target: 'neigh', action: 'del', ...n });
  }
  for (const [key, n] of w.neighs) {
    if (!usable(n.dev) || kNeighs.get(key)?.mac === n.mac) continue;
    neighAdd.push({ target: 'neigh', action: 'add', ...n });
  }

  /** Other remotes of a MAC that stays: removed before `replace` rewrites the entry. */
  const fdbMoveDel: Op[] = [];
  const fdbDel: Op[] = [];
  const fdbAdd: Op[] = [];
  const kFdb = new Map<string, Fdb>();
  const remotes = new Map<string, Fdb[]>();
  for (const f of kernel.fdb) {
    if (!current(f.dev) || !w.vxlan.has(f.dev)) continue;
    const key = `${f.dev}|${f.mac}`;
    remotes.set(key, [...(remotes.get(key) ?? []), f]);
  }
  for (const [key, list] of remotes) {
    const want = w.fdb.get(key);
    const match = list.find((f) => f.dst === want?.dst);
    if (match) kFdb.set(key, match);
    // A moved peer's single entry is rewritten by `replace`; any other remote goes.
    const moved = want && !match && list.length === 1;
    for (const f of list) {
      if (f === match || moved) continue;
      (want ? fdbMoveDel : fdbDel).push({ target: 'fdb', action: 'del', ...f });
    }
  }
  for (const [key, f] of w.fdb) {
    if (kFdb.has(key)) continue;
    fdbAdd.push({ target: 'fdb', action: 'add', ...f });
  }

  const routeDel: Op[] = [];
  const routeAdd: Op[] = [];
  const foreignDsts = new Set<string>();
  const ownedAtDefault = new Map<string, KernelRoute>();
  for (const r of kernel.routes) {
    // Routes on links that vanish or are recreated in this batch go with the link.
    if (r.dev !== undefined && (gone.has(r.dev) || fresh.has(r.dev))) continue;
    if (!r.owned) {
      foreignDsts.add(r.dst);
      continue;
    }
    const want = w.routes.get(r.dst);
    const atDefault = (r.metric ?? defaultMetric(r.dst)) === defaultMetric(r.dst);
    if (want && atDefault && !ownedAtDefault.has(r.dst)) {
      ownedAtDefault.set(r.dst, r);
      continue;
    }
    routeDel.push({ target: 'route', action: 'del', dst: r.dst, dev: r.dev, metric: r.metric });
  }
  for (const [dst, r] of w.routes) {
    if (r.dev !== undefined && w.tun.has(r.dev) && missingLinks.includes(r.dev)) continue;
    const have = ownedAtDefault.get(dst);
    if (have && sameRoute(have, r)) continue;
    // `replace` matches on destination and metric, not protocol: it would overwrite a foreign route.
    if (!have && foreignDsts.has(dst)) {
      conflicts.push(dst);
      continue;
    }
    // IPv6 refuses an onlink route whose gateway the table already routes
    // through another device ("Nexthop has invalid gateway or device
    // mismatch"), as when a peer's subnet moves from eth0 to the VXLAN device:
    // the old route goes just before, in the same `ip -batch` run.
    if (have && r.onlink && have.dev !== r.dev && dst.includes(':')) {
      routeAdd.push({ target: 'route', action: 'del', dst: have.dst, dev: have.dev, metric: have.metric });
    }
    routeAdd.push({ target: 'route', action: 'add', ...r });
  }

  const ops = [
    ...relinkDel, ...linkAdd, ...linkSet, ...addrAdd, ...neighAdd, ...fdbMoveDel, ...fdbAdd,
    ...routeAdd, ...routeDel, ...neighDel, ...addrDel, ...linkDel, ...fdbDel,
  ];
  return { ops, conflicts, missingLinks, rejected };
}

/**
 * Groups ops into processes, keeping their order: consecutive ops of one
 * tool share a process. The FDB additions (and the removals of a moving
 * MAC's other remotes) go first when they need no link this batch creates,
 * so a peer joining an existing device costs one `bridge` and one `ip` run;
 * FDB removals of departing peers come last, after their routes are gone.
 */
export function toBatches(ops: readonly Op[]): Batch[] {
  const created = new Set<string | undefined>(ops.filter((o) => o.target === 'link' && o.action === 'add').map((o) => o.dev));
  // The first run of bridge ops holds the FDB additions, if any (planChanges puts the departing peers' removals last).
  const start = ops.findIndex((o) => toolOf(o) === 'bridge');
  let end = start;
  while (end >= 0 && end < ops.length && toolOf(ops[end]!) === 'bridge') end++;
  const early = start < 0 ? [] : ops.slice(start, end);
  const hoist = start > 0 && early.some((o) => o.action === 'add') && !early.some((o) => created.has(o.dev));
  const ordered = hoist ? [...early, ...ops.slice(0, start), ...ops.slice(end)] : ops;
  const batches: Batch[] = [];
  for (const op of ordered) {
    const last = batches.at(-1);
    const tool = toolOf(op);
    if (last?.tool === tool) last.ops.push(op);
    else batches.push({ tool, ops: [op] });
  }
  return batches;
}
