// etcd's /metrics text reduced to the scale benchmark's counters, and deltas between two reads.
import t from 'tap';
import { counterDelta, etcdCounters, parseMetrics } from '../../src/bench/scale/etcd-metrics.js';

const text = (ranges: number, sent: number, watchers: number): string => `# HELP grpc_server_handled_total Total number of RPCs completed on the server.
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} ${ranges}
grpc_server_handled_total{grpc_code="DeadlineExceeded",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 2
grpc_server_handled_total{grpc_code="OK",grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"} 5
grpc_server_msg_sent_total{grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"} 1.2e+03
grpc_server_msg_sent_total{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 99
etcd_network_client_grpc_received_bytes_total 4096
etcd_network_client_grpc_sent_bytes_total ${sent}
etcd_debugging_mvcc_watcher_total ${watchers}
etcd_debugging_mvcc_watch_stream_total ${watchers}
`;

t.test('counters by method, every result code summed; watch messages only from the Watch method', async (t) => {
  const c = etcdCounters(parseMetrics(text(10, 70000, 12)));
  t.same(c, { calls: { Range: 12, Txn: 5 }, watchMessagesSent: 1200, receivedBytes: 4096, sentBytes: 70000, watchers: 12, watchStreams: 12 });
});

t.test('a delta subtracts counters and keeps the later gauges', async (t) => {
  const before = etcdCounters(parseMetrics(text(10, 70000, 12)));
  const after = etcdCounters(parseMetrics(text(40, 90000, 20)));
  t.same(counterDelta(before, after), { calls: { Range: 30, Txn: 0 }, watchMessagesSent: 0, receivedBytes: 0, sentBytes: 20000, watchers: 20, watchStreams: 20 });
});
