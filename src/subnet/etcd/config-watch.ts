// The net-conf source for <prefix>/config in etcd: the key's text now, then
// every change, re-read after a broken or compacted watch.
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { Backoff, abortable } from '../../core/backoff.js';
import { loggedSteps } from '../../core/retry-log.js';
import { deduplicated, type NetConfSource, type NetConfUpdate } from '../../config/source.js';
import { createEtcdClient, type EtcdOptions } from './client.js';
import { configKey } from './layout.js';
import { followWatchStream } from './watch-stream.js';

export class EtcdNetConfSource implements NetConfSource {
  readonly where: string;
  private readonly key: string;

  constructor(private readonly opts: { etcd: EtcdOptions; logger: Logger }) {
    this.key = configKey(opts.etcd.prefix);
    this.where = `${this.key} in etcd`;
  }

  /** Reads the key, follows it from the next revision; after a broken stream, reads again (text is compared, not revisions). */
  async watch(onUpdate: (update: NetConfUpdate) => void, signal: AbortSignal): Promise<void> {
    const report = deduplicated(onUpdate);
    const client = createEtcdClient(this.opts.etcd);
    const backoff = new Backoff(loggedSteps(`watching ${this.key}`, this.opts.logger));
    const deliver = (value: Buffer | undefined): void =>
      report(value ? { text: value.toString('utf8') } : { unreadable: `no network config at ${this.key}` });
    try {
      while (!signal.aborted) {
        try {
          const res = await abortable(client.kv.range({ key: Buffer.from(this.key) }), signal);
          deliver(res.kvs[0]?.value);
          await this.follow(client, BigInt(res.header.revision) + 1n, deliver, backoff, signal);
        } catch (err) {
          if (signal.aborted || !(await backoff.wait(err, signal))) break;
        }
      }
    } finally {
      client.close();
    }
  }

  /** Resolves when aborted or compacted (the caller re-reads); rejects when the stream breaks. */
  private async follow(client: Etcd3, from: bigint, deliver: (value: Buffer | undefined) => void, backoff: Backoff, signal: AbortSignal): Promise<void> {
    await followWatchStream(
      client,
      { key: Buffer.from(this.key), startRevision: from },
      (res) => {
        if (res.created) backoff.reset();
        for (const ev of res.events) deliver(ev.type === 'Put' ? ev.kv.value : undefined);
      },
      signal,
      'config watch',
    );
  }
}
