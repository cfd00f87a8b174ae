// etcd's own view of the load: its Prometheus /metrics (served on the client
// URL), reduced to the counters the scale benchmark reports per change.

export interface EtcdCounters {
  /** Finished gRPC calls by method (Range, Txn, LeaseGrant, LeaseKeepAlive, Watch...). */
  calls: Record<string, number>;
  /** Messages etcd sent on watch streams (one per event batch per watcher, plus creations and progress). */
  watchMessagesSent: number;
  receivedBytes: number;
  sentBytes: number;
  /** Gauges: watchers and watch streams open now. */
  watchers: number;
  watchStreams: number;
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format (the subset etcd writes: no timestamps needed). */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

export function etcdCounters(samples: readonly Sample[]): EtcdCounters {
  const sum = (name: string, where: (l: Record<string, string>) => boolean = () => true): number =>
    samples.filter((s) => s.name === name && where(s.labels)).reduce((a, s) => a + s.value, 0);
  const calls: Record<string, number> = {};
  for (const s of samples) {
    if (s.name !== 'grpc_server_handled_total' || !s.labels.grpc_method) continue;
    calls[s.labels.grpc_method] = (calls[s.labels.grpc_method] ?? 0) + s.value;
  }
  return {
    calls,
    watchMessagesSent: sum('grpc_server_msg_sent_total', (l) => l.grpc_method === 'Watch'),
    receivedBytes: sum('etcd_network_client_grpc_received_bytes_total'),
    sentBytes: sum('etcd_network_client_grpc_sent_bytes_total'),
    watchers: sum('etcd_debugging_mvcc_watcher_total'),
    watchStreams: sum('etcd_debugging_mvcc_watch_stream_total'),
  };
}

export async function readEtcdCounters(endpoint: string): Promise<EtcdCounters> {
  const res = await fetch(`${endpoint.replace(/\/$/, '')}/metrics`, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`etcd /metrics answered ${res.status}`);
  return etcdCounters(parseMetrics(await res.text()));
}

/** after - before, counters only (the gauges are taken from `after`). */
export function counterDelta(before: EtcdCounters, after: EtcdCounters): EtcdCounters {
  const calls: Record<string, number> = {};
  for (const [k, v] of Object.entries(after.calls)) calls[k] = v - (before.calls[k] ?? 0);
  return {
    calls,
    watchMessagesSent: after.watchMessagesSent - before.watchMessagesSent,
    receivedBytes: after.receivedBytes - before.receivedBytes,
    sentBytes: after.sentBytes - before.sentBytes,
    watchers: after.watchers,
    watchStreams: after.watchStreams,
  };
}
