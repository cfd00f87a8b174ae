// The lease watch: one range call for a snapshot, then one watch stream from
// the snapshot's revision + 1. A broken stream resumes from the last revision
// seen (nothing missed); a compacted one re-lists and delivers the difference.
import type { Etcd3, IEvent, IKeyValue } from 'etcd3';
import type { Logger } from 'pino';
import { sameLeaseAttrs, sameSubnets, type Lease, type LeaseEvent } from '../lease.js';
import { Backoff, abortable } from '../../core/backoff.js';
import { loggedSteps } from '../../core/retry-log.js';
import { prefixRangeEnd } from './layout.js';
import { followWatchStream } from './watch-stream.js';

export interface LeaseKeySource {
  client: Etcd3;
  /** <prefix>/subnets/ */
  dir: string;
  logger: Logger;
  /** Whatever must be read before leases can be (the net-conf); retried like the watch itself. */
  ready(signal: AbortSignal): Promise<unknown>;
  /** The valid lease in a key/value, or undefined (the source warns about it). */
  readLease(kv: IKeyValue): Lease | undefined;
  /** Drops remembered warnings for a deleted key, or for every key not in the set. */
  forget(keys: string | Set<string>): void;
  /** Told why the watch broke (an error), and undefined once etcd confirms a new watch. */
  streamState?(err: unknown): void;
}

type OnEvents = (events: LeaseEvent[], snapshot: boolean) => void;
type StreamEnd = 'compacted' | 'aborted';

/** Runs until `signal` aborts; never throws on etcd data or etcd outages. */
export async function watchLeaseKeys(src: LeaseKeySource, onEvents: OnEvents, signal: AbortSignal): Promise<void> {
  await new LeaseWatch(src, onEvents).run(signal);
}

function sameLease(a: Lease, b: Lease): boolean {
  return sameSubnets(a, b) && sameLeaseAttrs(a.attrs, b.attrs);
}

class LeaseWatch {
  private current = new Map<string, Lease>();
  private snapshotSent = false;
  private isReady = false;
  /** Where the stream (re)starts; undefined means "list first". */
  private nextRevision: bigint | undefined;
  private readonly backoff: Backoff;

  constructor(private readonly src: LeaseKeySource, private readonly onEvents: OnEvents) {
    this.backoff = new Backoff(loggedSteps('etcd lease watch', src.logger));
  }

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        if (!this.isReady) {
          await this.src.ready(signal);
          this.isReady = true;
        }
        if (this.nextRevision === undefined) await this.relist(signal);
        if ((await this.follow(signal)) === 'compacted') this.nextRevision = undefined;
      } catch (err) {
        if (signal.aborted) break;
        this.src.streamState?.(err);
        if (!(await this.backoff.wait(err, signal))) break;
      }
    }
  }

  private async relist(signal: AbortSignal): Promise<void> {
    const dir = this.src.dir;
    const res = await abortable(this.src.client.kv.range({ key: Buffer.from(dir), range_end: prefixRangeEnd(dir) }), signal);
    const next = new Map<string, Lease>();
    const keys = new Set<string>();
    for (const kv of res.kvs) {
      const key = kv.key.toString('utf8');
      keys.add(key);
      const lease = this.src.readLease(kv);
      if (lease) next.set(key, lease);
    }
    this.src.forget(keys);
    const events: LeaseEvent[] = [];
    for (const [key, old] of this.current) {
      const now = next.get(key);
      if (!now || !sameLease(old, now)) events.push({ type: 'removed', lease: old });
    }
    for (const [key, now] of next) {
      const old = this.current.get(key);
      if (!old || !sameLease(old, now)) events.push({ type: 'added', lease: now });
    }
    this.current = next;
    this.nextRevision = BigInt(res.header.revision) + 1n;
    const snapshot = !this.snapshotSent;
    this.snapshotSent = true;
    if (snapshot || events.length > 0) this.deliver(events, snapshot);
  }

  /** Follows one watch stream until it breaks (rejects), is compacted, or we abort. */
  private async follow(signal: AbortSignal): Promise<StreamEnd> {
    const from = this.nextRevision!;
    const end = await followWatchStream(
      this.src.client,
      { key: Buffer.from(this.src.dir), rangeEnd: prefixRangeEnd(this.src.dir), startRevision: from, progressNotify: true },
      (res) => {
        if (res.created) {
          this.backoff.reset();
          this.src.streamState?.(undefined);
          return;
        }
        if (res.events.length > 0) {
          this.apply(res.events);
          this.nextRevision = BigInt(res.events[res.events.length - 1]!.kv.mod_revision) + 1n;
        } else {
          // A progress notification: every change up to header.revision has been sent.
          const progressed = BigInt(res.header.revision) + 1n;
          if (this.nextRevision === undefined || progressed > this.nextRevision) this.nextRevision = progressed;
        }
      },
      signal,
      'lease watch',
    );
    if (end === 'compacted') {
      this.src.logger.info({ fromRevision: String(from) }, 'lease watch fell behind an etcd compaction; re-listing');
    }
    return end;
  }

  private apply(changes: IEvent[]): void {
    const events: LeaseEvent[] = [];
    for (const change of changes) {
      const key = change.kv.key.toString('utf8');
      const old = this.current.get(key);
      const now = change.type === 'Put' ? this.src.readLease(change.kv) : undefined;
      if (change.type !== 'Put') this.src.forget(key);
      if (old && now && sameLease(old, now)) continue; // re-put with a fresh etcd lease: nothing changed for peers
      if (old) events.push({ type: 'removed', lease: old });
      if (now) {
        events.push({ type: 'added', lease: now });
        this.current.set(key, now);
      } else {
        this.current.delete(key);
      }
    }
    if (events.length > 0) this.deliver(events, false);
  }

  private deliver(events: LeaseEvent[], snapshot: boolean): void {
    try {
      this.onEvents(events, snapshot);
    } catch (err) {
      // The consumer's bug must not stop the watch; it still gets later events.
      this.src.logger.error({ err }, 'lease event handler threw');
    }
  }
}
