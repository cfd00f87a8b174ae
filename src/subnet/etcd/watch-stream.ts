// One etcd watch stream, followed until it ends. Shared by the lease watch and
// the config watch so both end, cancel and report compaction the same way.
import type { Etcd3, IWatchResponse } from 'etcd3';

export interface WatchRequest {
  key: Buffer;
  rangeEnd?: Buffer;
  startRevision: bigint;
  progressNotify?: boolean;
}

/**
 * Resolves 'aborted' when `signal` aborts and 'compacted' when etcd has
 * compacted past `startRevision` (the caller re-reads); rejects when the
 * stream breaks or etcd cancels it for another reason. `onResponse` sees
 * every other response: creation, events and progress notifications.
 */
export async function followWatchStream(
  client: Etcd3,
  req: WatchRequest,
  onResponse: (res: IWatchResponse) => void,
  signal: AbortSignal,
  what: string,
): Promise<'aborted' | 'compacted'> {
  const stream = await client.watchClient.watch();
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      fn();
      // end() first: a stream no longer writable keeps etcd3 from treating our own
      // CANCELLED as a host failure and resetting every connection to it.
      stream.end();
      stream.cancel();
    };
    const onAbort = (): void => finish(() => resolve('aborted'));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    stream.on('error', (err) => finish(() => reject(err)));
    stream.on('end', () => finish(() => reject(new Error(`etcd closed the ${what} stream`))));
    stream.on('data', (res: IWatchResponse) => {
      if (settled) return;
      if (res.canceled) {
        if (res.compact_revision !== '0') finish(() => resolve('compacted'));
        else finish(() => reject(new Error(`etcd canceled the ${what}: ${res.cancel_reason || 'no reason given'}`)));
        return;
      }
      onResponse(res);
    });
    stream.write({
      create_request: {
        key: req.key,
        ...(req.rangeEnd ? { range_end: req.rangeEnd } : {}),
        start_revision: String(req.startRevision),
        ...(req.progressNotify ? { progress_notify: true } : {}),
      },
    });
  });
}
