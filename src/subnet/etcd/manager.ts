// SubnetManager on etcd v3, flannel's key layout: <prefix>/config and
// <prefix>/subnets/<ip>-<len>, each lease key attached to an etcd lease.
// Its job is the lease's life in etcd: create, reclaim, renew, list, watch.
// Which subnet to ask for is free-subnet.ts; the value format, lease-value.ts.
import { randomInt } from 'node:crypto';
import { castGrpcError, type Etcd3, type IKeyValue, type IRequestOp, type ICompare } from 'etcd3';
import type { Logger } from 'pino';
import { parseNetConf } from '../../config/parse.js';
import { ConfigError, type NetConf } from '../../config/netconf.js';
import { abortable, sleep } from '../../core/backoff.js';
import { SaidOnce } from '../../core/said-once.js';
import { WeftError } from '../../errors.js';
import type { Cidr, IP } from '../../core/cidr.js';
import { sameLeaseAttrs, withoutIPv6, type Lease, type LeaseAttrs, type LeaseEvent } from '../lease.js';
import { LeaseGoneError, PublicIPTakenError, SubnetTakenError, type SubnetManager } from '../manager.js';
import { createEtcdClient, etcdFailure, ETCD_CALLS, EtcdUnreachableError, type EtcdCall, type EtcdOptions } from './client.js';
import { configKey, leaseKeyName, parseLeaseKeyName, prefixRangeEnd, subnetKey, subnetsDir, subnetsOfKeyName, type KeySubnets } from './layout.js';
import { ownKeySubnets } from './free-subnet.js';
import { formatLeaseValue, parseLeaseEntry } from './lease-value.js';
import { watchLeaseKeys } from './watch.js';

export const DEFAULT_LEASE_TTL_SECONDS = 24 * 60 * 60;
/** Collisions only happen when nodes pick the same subnet at once; a few retries settle it. */
const MAX_ACQUIRE_ATTEMPTS = 20;

export interface EtcdSubnetManagerOptions {
  etcd: EtcdOptions;
  logger: Logger;
  /** TTL of this node's lease (default 24 h); the agent renews well before it. */
  leaseTtlSeconds?: number;
  /** net-conf from a file (--net-conf); otherwise read from <prefix>/config. */
  netConf?: NetConf;
}

/** One key under <prefix>/subnets/, for `weft leases`: a lease (and what of it was dropped), or why it is unusable. */
export type LeaseListing = { key: string; lease: Lease; warning?: string } | { key: string; invalid: string };

export class EtcdSubnetManager implements SubnetManager {
  /** Made on first use: a TLS file that is missing now fails a call, which the agent retries, not the constructor. */
  private lazyClient: Etcd3 | undefined;
  private get client(): Etcd3 {
    return (this.lazyClient ??= createEtcdClient(this.etcdOptions));
  }
  private readonly etcdOptions: EtcdOptions;
  private readonly prefix: string;
  private readonly endpoints: readonly string[];
  private readonly ttlSeconds: number;
  private readonly logger: Logger;
  private netConf: NetConf | undefined;
  /** key -> mod revision already warned about, so a bad value is reported once, not on every resync. */
  private readonly warned = new SaidOnce();
  private readonly closing = new AbortController();
  /** Requests sent to etcd, by call (unary calls, each try, and stream creations). */
  private readonly requests = Object.fromEntries(ETCD_CALLS.map((c) => [c, 0])) as Record<EtcdCall, number>;
  /** Why the last etcd call could not reach a working etcd; cleared by the next that does. */
  private callProblem: string | undefined;
  /** Why the lease watch is down; cleared once etcd confirms a new watch. */
  private watchProblem: string | undefined;

  constructor(opts: EtcdSubnetManagerOptions) {
    opts = { ...opts, etcd: { ...opts.etcd, onRequest: (call) => this.requests[call]++ } };
    this.etcdOptions = opts.etcd;
    this.prefix = opts.etcd.prefix;
    this.endpoints = opts.etcd.endpoints;
    this.ttlSeconds = opts.leaseTtlSeconds ?? DEFAULT_LEASE_TTL_SECONDS;
    if (!Number.isInteger(this.ttlSeconds) || this.ttlSeconds < 1) {
      throw new WeftError(`lease TTL ${opts.leaseTtlSeconds} is not a positive number of seconds`, 'pass a whole number of seconds');
    }
    this.logger = opts.logger;
    this.netConf = opts.netConf;
  }

  async getNetworkConfig(signal?: AbortSignal): Promise<NetConf> {
    if (this.netConf) return this.netConf;
    const key = configKey(this.prefix);
    const res = await this.call('reading the network config', () => this.client.kv.range({ key: Buffer.from(key) }), signal);
    const kv = res.kvs[0];
    if (!kv) {
      throw new WeftError(
        `no network config at ${key} in etcd at ${this.endpoints.join(',')}`,
        `write one with "weft config put --etcd-endpoints=${this.endpoints.join(',')} --etcd-prefix=${this.prefix} net-conf.json"`,
      );
    }
    try {
      this.netConf = parseNetConf(kv.value.toString('utf8'));
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      throw new WeftError(`${err.message} (in ${key})`, 'fix the file and write it again with "weft config put"');
    }
    return this.netConf;
  }

  health(): { part: string; reason: string } | undefined {
    const reason = this.watchProblem ?? this.callProblem;
    return reason === undefined ? undefined : { part: 'etcd', reason };
  }

  requestCounts(): Readonly<Record<string, number>> {
    return { ...this.requests };
  }

  async acquireLease(attrs: LeaseAttrs, opts: { prefer?: Cidr; preferIPv6?: Cidr; signal?: AbortSignal; keepPrefer?: boolean } = {}): Promise<Lease> {
    const net = await this.getNetworkConfig(opts.signal);
    const ipv6 = attrs.publicIPv6 ? net.ipv6 : undefined;
    const published = ipv6 ? attrs : withoutIPv6(attrs);
    const value = formatLeaseValue(published);
    for (let attempt = 1; attempt <= MAX_ACQUIRE_ATTEMPTS; attempt++) {
      const kvs = await this.listSubnetKeys(opts.signal);
      const own = this.findOwn(kvs, attrs, opts.prefer);
      if (!own && opts.keepPrefer && opts.prefer) this.checkPreferFree(kvs, opts.prefer);
      const ownName = own && this.keyName(own.kv);
      const others = this.keyNames(kvs).filter((name) => name !== ownName);
      const subnets = ownKeySubnets(net, ipv6, others, own?.subnets, { subnet: opts.prefer, ipv6Subnet: opts.preferIPv6 });
      const lease = !own
        ? await this.create(subnets, published, value, opts.signal).then((made) => made && this.settleCreateRace(made, attrs, opts.signal))
        : leaseKeyName(subnets.subnet, subnets.ipv6Subnet) === ownName
          ? await this.reclaim(own.kv, own.lease.attrs, subnets, published, value, opts.signal)
          : await this.rekey(own.kv, subnets, published, value, opts.signal);
      if (lease) {
        this.logger.info(
          { subnet: lease.subnet.toString(), ...(lease.ipv6Subnet ? { ipv6Subnet: lease.ipv6Subnet.toString() } : {}), publicIP: attrs.publicIP.toString(), reused: !!own },
          'subnet lease acquired',
        );
        return lease;
      }
      // Someone changed the key between our read and our write: read again, after a short random pause.
      if (!(await sleep(randomInt(10, 60), opts.signal))) opts.signal?.throwIfAborted();
    }
    throw new WeftError(
      `could not lease a subnet after ${MAX_ACQUIRE_ATTEMPTS} attempts: every pick collided with another writer`,
      `check for a process rewriting ${subnetsDir(this.prefix)} and retry`,
    );
  }

  async renewLease(lease: Lease, signal?: AbortSignal): Promise<Lease> {
    const net = await this.getNetworkConfig(signal);
    const dual = !!(lease.attrs.publicIPv6 && net.ipv6);
    if (dual !== !!lease.ipv6Subnet) {
      // Renewing would publish a dual-stack key without its IPv6 half (or the reverse): acquireLease re-keys it, IPv4 subnet kept.
      this.logger.info({ subnet: lease.subnet.toString(), ipv6: dual }, `the lease ${dual ? 'gains' : 'loses'} its IPv6 half; taking it again`);
      throw new LeaseGoneError(lease.subnet);
    }
    const subnets: KeySubnets = { subnet: lease.subnet, ...(lease.ipv6Subnet ? { ipv6Subnet: lease.ipv6Subnet } : {}) };
    const attrs = dual ? lease.attrs : withoutIPv6(lease.attrs);
    const name = leaseKeyName(lease.subnet, lease.ipv6Subnet);
    const key = subnetKey(this.prefix, lease.subnet, lease.ipv6Subnet);
    const value = formatLeaseValue(attrs);
    for (let attempt = 1; attempt <= 3; attempt++) {
      const res = await this.call('renewing the lease', () => this.client.kv.range({ key: Buffer.from(key) }), signal);
      const kv = res.kvs[0];
      if (!kv) throw new LeaseGoneError(lease.subnet);
      const current = parseLeaseEntry(name, kv.value, net);
      if (!current.ok || !current.lease.attrs.publicIP.equals(attrs.publicIP)) throw new LeaseGoneError(lease.subnet);
      const unchanged = sameLeaseAttrs(current.lease.attrs, attrs);
      if (kv.lease === '0') {
        if (!unchanged && !(await this.replace(kv, value, '0', signal))) continue;
        return leaseOn(subnets, attrs);
      }
      // Republish changed attrs without touching the TTL: an unchanged lease renews with no event for peers.
      if (!unchanged && !(await this.replace(kv, value, undefined, signal))) continue;
      const ttl = await this.keepAliveOnce(kv.lease, signal);
      if (ttl <= 0) throw new LeaseGoneError(lease.subnet);
      if (ttl !== this.ttlSeconds) {
        // The TTL setting changed since the lease was made: move the key to a lease of the new TTL.
        const fresh = await this.reclaim(kv, current.lease.attrs, subnets, attrs, value, signal);
        if (!fresh) continue;
        return fresh;
      }
      return leaseOn(subnets, attrs, Date.now() + ttl * 1000);
    }
    throw new LeaseGoneError(lease.subnet);
  }

  async watchLeases(onEvents: (events: LeaseEvent[], snapshot: boolean) => void, signal: AbortSignal): Promise<void> {
    // close() ends every watch too.
    const both = new AbortController();
    const stop = () => both.abort();
    signal.addEventListener('abort', stop, { once: true });
    this.closing.signal.addEventListener('abort', stop, { once: true });
    if (signal.aborted || this.closing.signal.aborted) stop();
    try {
      await this.watch(onEvents, both.signal);
    } finally {
      signal.removeEventListener('abort', stop);
      this.closing.signal.removeEventListener('abort', stop);
    }
  }

  private async watch(onEvents: (events: LeaseEvent[], snapshot: boolean) => void, signal: AbortSignal): Promise<void> {
    await watchLeaseKeys(
      {
        client: this.client,
        dir: subnetsDir(this.prefix),
        logger: this.logger,
        ready: (s) => this.getNetworkConfig(s),
        readLease: (kv) => this.readLease(kv, this.netConf!),
        forget: (keys) => this.forgetWarnings(keys),
        streamState: (err) => {
          this.watchProblem = err === undefined ? undefined : etcdFailure(castGrpcError(err as Error), this.endpoints, 'watching leases').message;
        },
      },
      onEvents,
      signal,
    );
  }

  /**
   * Every lease key with its state, for display. A lease's `expiresAt` comes
   * from one TTL query per etcd lease, so this is for people, not for loops.
   */
  async listLeases(signal?: AbortSignal): Promise<LeaseListing[]> {
    const net = await this.getNetworkConfig(signal);
    const dir = subnetsDir(this.prefix);
    const rows: LeaseListing[] = [];
    const ttlQueries: Promise<void>[] = [];
    for (const kv of await this.listSubnetKeys(signal)) {
      const key = kv.key.toString('utf8');
      const entry = parseLeaseEntry(key.slice(dir.length), kv.value, net);
      if (!entry.ok) {
        rows.push({ key, invalid: entry.reason });
        continue;
      }
      const row: { key: string; lease: Lease; warning?: string } = { key, lease: entry.lease, ...(entry.warning ? { warning: entry.warning } : {}) };
      rows.push(row);
      if (kv.lease === '0') continue;
      ttlQueries.push(
        this.call('reading lease TTLs', () => this.client.leaseClient.leaseTimeToLive({ ID: kv.lease }), signal).then((res) => {
          row.lease.expiresAt = Date.now() + Math.max(0, Number(res.TTL)) * 1000;
        }),
      );
    }
    await Promise.all(ttlQueries);
    return rows;
  }

  async close(): Promise<void> {
    this.closing.abort();
    this.lazyClient?.close();
  }

  /** Every key under <prefix>/subnets/, in one range call. */
  private async listSubnetKeys(signal?: AbortSignal): Promise<IKeyValue[]> {
    const dir = subnetsDir(this.prefix);
    const res = await this.call('listing leases', () => this.client.kv.range({ key: Buffer.from(dir), range_end: prefixRangeEnd(dir) }), signal);
    return res.kvs;
  }

  /** A valid lease from a key/value, or undefined; problems are warned about once per key and revision. */
  private readLease(kv: IKeyValue, net: NetConf): Lease | undefined {
    const key = kv.key.toString('utf8');
    const entry = parseLeaseEntry(key.slice(subnetsDir(this.prefix).length), kv.value, net);
    if (entry.ok) {
      if (entry.warning === undefined) this.warned.forget(key);
      else if (this.warned.news(key, kv.mod_revision)) {
        this.logger.warn({ key: key.slice(0, 256), reason: entry.warning }, 'using only part of a lease');
      }
      return entry.lease;
    }
    if (this.warned.news(key, kv.mod_revision)) {
      this.logger.warn({ key: key.slice(0, 256), reason: entry.reason }, 'skipping invalid lease');
    }
    return undefined;
  }

  private forgetWarnings(keys: { has(key: string): boolean } | string): void {
    if (typeof keys === 'string') this.warned.forget(keys);
    else this.warned.retain(keys);
  }

  /**
   * This node's key: the one carrying its PublicIP and its node name, or no
   * node name (a flannel lease, or one from before weft published names); a
   * reservation first, then `prefer`, then any. Whatever its shape:
   * acquireLease re-keys a single-family key to dual-stack and back, so taking
   * over a dual-stack key never publishes it without its IPv6 half. A key with
   * this PublicIP and another node's name is that node's: PublicIPTakenError.
   */
  private findOwn(kvs: IKeyValue[], attrs: LeaseAttrs, prefer?: Cidr): { kv: IKeyValue; lease: Lease; subnets: KeySubnets } | undefined {
    const net = this.netConf!;
    const own: { kv: IKeyValue; lease: Lease; subnets: KeySubnets }[] = [];
    let other: Lease | undefined;
    for (const kv of kvs) {
      const lease = this.readLease(kv, net);
      if (!lease?.attrs.publicIP.equals(attrs.publicIP)) continue;
      if (attrs.nodeName && lease.attrs.nodeName && lease.attrs.nodeName !== attrs.nodeName) {
        other ??= lease;
        continue;
      }
      // The key's subnets, not the lease's: an IPv6 half dropped as unusable is still the key's, and is replaced.
      const subnets = parseLeaseKeyName(this.keyName(kv));
      if (typeof subnets !== 'string') own.push({ kv, lease, subnets });
    }
    if (own.length === 0 && other) throw new PublicIPTakenError(attrs.publicIP, attrs.nodeName, other);
    return (
      own.find((o) => o.kv.lease === '0') ?? own.find((o) => prefer && o.lease.subnet.equals(prefer)) ?? own[0]
    );
  }

  /** Throws SubnetTakenError when a key (not this node's) holds `subnet`. */
  private checkPreferFree(kvs: IKeyValue[], subnet: Cidr): void {
    for (const kv of kvs) {
      if (subnetsOfKeyName(this.keyName(kv)).some((s) => s.equals(subnet))) {
        throw new SubnetTakenError(subnet, this.readLease(kv, this.netConf!)?.attrs);
      }
    }
  }

  /**
   * Two nodes with one PublicIP starting at once may each create a key. The
   * oldest key (lowest create revision) wins: a node that finds another
   * node's key with its PublicIP created before its own deletes its own and
   * throws PublicIPTakenError. The later creator always sees the earlier key,
   * so exactly one keeps its lease. One extra range, on creation only.
   */
  private async settleCreateRace(made: { lease: Lease; key: Buffer; revision: string }, attrs: LeaseAttrs, signal?: AbortSignal): Promise<Lease> {
    if (!attrs.nodeName) return made.lease;
    const mine = BigInt(made.revision);
    const earlier = (await this.listSubnetKeys(signal))
      .filter((kv) => BigInt(kv.create_revision) < mine && !kv.key.equals(made.key))
      .map((kv) => this.readLease(kv, this.netConf!))
      .find((l) => l?.attrs.publicIP.equals(attrs.publicIP) && l.attrs.nodeName && l.attrs.nodeName !== attrs.nodeName);
    if (!earlier) return made.lease;
    await this.txn('giving up a lease another node took first', [{ key: made.key, target: 'Mod', result: 'Equal', mod_revision: made.revision }], [{ request_delete_range: { key: made.key } }], signal);
    throw new PublicIPTakenError(attrs.publicIP, attrs.nodeName, earlier);
  }

  /** A key's name relative to <prefix>/subnets/ ("10.244.3.0-24"). */
  private keyName(kv: IKeyValue): string {
    return kv.key.toString('utf8').slice(subnetsDir(this.prefix).length);
  }

  private keyNames(kvs: IKeyValue[]): string[] {
    return kvs.map((kv) => this.keyName(kv));
  }

  private keyOf(subnets: KeySubnets): Buffer {
    return Buffer.from(subnetKey(this.prefix, subnets.subnet, subnets.ipv6Subnet));
  }

  /** Creates the key only if it does not exist: the lease, the key and its create revision. Undefined on collision. */
  private async create(subnets: KeySubnets, attrs: LeaseAttrs, value: string, signal?: AbortSignal): Promise<{ lease: Lease; key: Buffer; revision: string } | undefined> {
    this.checkOwnValue(subnets, value);
    const key = this.keyOf(subnets);
    const { id, ttl } = await this.grant(signal);
    const res = await this.call(
      'creating a lease',
      () =>
        this.client.kv.txn({
          compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
          success: [{ request_put: { key, value: Buffer.from(value), lease: id } }],
        }),
      signal,
    );
    if (!res.succeeded) {
      this.revoke(id);
      return undefined;
    }
    return { lease: leaseOn(subnets, attrs, Date.now() + ttl * 1000), key, revision: res.header.revision };
  }

  /**
   * Takes over our existing key: republishes attrs and moves it to a fresh
   * etcd lease (a reservation stays without one). Undefined if the key changed meanwhile.
   */
  private async reclaim(kv: IKeyValue, existing: LeaseAttrs, subnets: KeySubnets, attrs: LeaseAttrs, value: string, signal?: AbortSignal): Promise<Lease | undefined> {
    this.checkOwnValue(subnets, value);
    if (kv.lease === '0') {
      if (!sameLeaseAttrs(existing, attrs) && !(await this.replace(kv, value, '0', signal))) return undefined;
      return leaseOn(subnets, attrs);
    }
    const { id, ttl } = await this.grant(signal);
    if (!(await this.replace(kv, value, id, signal))) {
      this.revoke(id);
      return undefined;
    }
    this.revokeIfUnused(kv.lease);
    return leaseOn(subnets, attrs, Date.now() + ttl * 1000);
  }

  /**
   * Moves our key to the one naming `subnets` (a single-family key upgraded to
   * dual-stack, or back) in one transaction: the old key goes and the new one
   * comes at the same revision, so peers never see the node without a lease and
   * nobody can take the subnets in between. A reservation stays one. Undefined
   * if the old key changed or the new one exists.
   */
  private async rekey(kv: IKeyValue, subnets: KeySubnets, attrs: LeaseAttrs, value: string, signal?: AbortSignal): Promise<Lease | undefined> {
    this.checkOwnValue(subnets, value);
    const key = this.keyOf(subnets);
    const granted = kv.lease === '0' ? undefined : await this.grant(signal);
    const ok = await this.txn(
      'moving a lease to its new key',
      [
        { key: kv.key, target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision },
        { key, target: 'Create', result: 'Equal', create_revision: 0 },
      ],
      [{ request_delete_range: { key: kv.key } }, { request_put: { key, value: Buffer.from(value), ...(granted ? { lease: granted.id } : {}) } }],
      signal,
    );
    if (!ok) {
      if (granted) this.revoke(granted.id);
      return undefined;
    }
    if (granted) this.revokeIfUnused(kv.lease);
    this.logger.info({ from: kv.key.toString('utf8').slice(0, 256), to: key.toString('utf8') }, subnets.ipv6Subnet ? 'lease moved to a dual-stack key' : 'lease moved to an IPv4-only key');
    return leaseOn(subnets, attrs, granted && Date.now() + granted.ttl * 1000);
  }

  /** Rewrites `kv` if it is unchanged since read; `leaseId` undefined keeps its etcd lease. */
  private replace(kv: IKeyValue, value: string, leaseId: string | undefined, signal?: AbortSignal): Promise<boolean> {
    const put =
      leaseId === undefined
        ? { key: kv.key, value: Buffer.from(value), ignore_lease: true }
        : { key: kv.key, value: Buffer.from(value), lease: leaseId };
    return this.txn('updating a lease', [{ key: kv.key, target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision }], [{ request_put: put }], signal);
  }

  private async txn(doing: string, compare: ICompare[], success: IRequestOp[], signal?: AbortSignal): Promise<boolean> {
    const res = await this.call(doing, () => this.client.kv.txn({ compare, success }), signal);
    return res.succeeded;
  }

  private async grant(signal?: AbortSignal): Promise<{ id: string; ttl: number }> {
    const res = await this.call('granting an etcd lease', () => this.client.leaseClient.leaseGrant({ TTL: this.ttlSeconds }), signal);
    return { id: res.ID, ttl: Number(res.TTL) };
  }

  /** Best effort, not awaited: an etcd lease we granted but did not use would expire on its own. */
  private revoke(id: string): void {
    this.client.leaseClient.leaseRevoke({ ID: id }).catch(() => undefined);
  }

  /** Revokes the etcd lease our key just moved off, unless some other key still hangs on it. */
  private revokeIfUnused(id: string): void {
    this.client.leaseClient
      .leaseTimeToLive({ ID: id, keys: true })
      .then((res) => (res.keys.length === 0 && Number(res.TTL) > 0 ? this.client.leaseClient.leaseRevoke({ ID: id }) : undefined))
      .catch(() => undefined);
  }

  /** One keepalive round trip; returns the TTL granted (0 when the etcd lease is gone). */
  private async keepAliveOnce(id: string, signal?: AbortSignal): Promise<number> {
    return this.call(
      'renewing the lease',
      async () => {
        const stream = await this.client.leaseClient.leaseKeepAlive({ deadline: new Date(Date.now() + 5000) });
        return new Promise<number>((resolve, reject) => {
          let settled = false;
          const finish = (fn: () => void) => {
            if (settled) return;
            settled = true;
            fn();
            // end() first: a stream no longer writable keeps etcd3 from treating our own
            // CANCELLED as a host failure and resetting every connection to it.
            stream.end();
            stream.cancel();
          };
          stream.on('data', (res) => finish(() => resolve(Number(res.TTL))));
          stream.on('error', (err) => finish(() => reject(castGrpcError(err))));
          stream.on('end', () => finish(() => reject(new Error('lease keepalive stream ended'))));
          stream.write({ ID: id });
        });
      },
      signal,
    );
  }

  /** Our own value must pass the checks peers apply to it, whole: they would skip us, or our IPv6 half. */
  private checkOwnValue(subnets: KeySubnets, value: string): void {
    const name = leaseKeyName(subnets.subnet, subnets.ipv6Subnet);
    const entry = parseLeaseEntry(name, value, this.netConf!);
    const problem = entry.ok ? entry.warning : entry.reason;
    if (problem) throw new WeftError(`refusing to publish lease ${name}: ${problem}`, 'check --public-ip, --public-ipv6 and the backend config');
  }

  /** Runs one etcd call, abortable, with failures turned into one line naming the endpoints. */
  private async call<T>(doing: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    try {
      const result = await (signal ? abortable(fn(), signal) : fn());
      this.callProblem = undefined;
      return result;
    } catch (err) {
      if (signal?.aborted) throw err;
      const failure = etcdFailure(err, this.endpoints, doing);
      if (failure instanceof EtcdUnreachableError) this.callProblem = failure.message;
      throw failure;
    }
  }
}

/** This node's lease on the key naming `subnets`; `expiresAt` undefined for a reservation. */
function leaseOn(subnets: KeySubnets, attrs: LeaseAttrs, expiresAt?: number): Lease {
  return { ...subnets, attrs, ...(expiresAt === undefined ? {} : { expiresAt }) };
}

/** Lists the leases with a short-lived client, for `weft leases`. */
export async function listLeases(opts: EtcdSubnetManagerOptions, signal?: AbortSignal): Promise<{ netConf: NetConf; leases: LeaseListing[] }> {
  const manager = new EtcdSubnetManager(opts);
  try {
    const leases = await manager.listLeases(signal);
    return { netConf: await manager.getNetworkConfig(signal), leases };
  } finally {
    await manager.close();
  }
}
