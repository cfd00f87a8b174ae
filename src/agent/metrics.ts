// Prometheus text exposition (format 0.0.4): families with HELP and TYPE,
// samples read from the agent's state at scrape time. A registry library
// would hold a second copy of that state; these few lines render it as is.

import type { ReconcilerStatus } from '../dataplane/reconciler.js';
import type { FailingPart } from './health.js';

export type MetricType = 'counter' | 'gauge';

export interface Sample {
  labels?: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  /** Full name, e.g. weft_lease_renewals_total (counters end in _total). */
  name: string;
  help: string;
  type: MetricType;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A family with one unlabelled sample. */
export function single(name: string, type: MetricType, help: string, value: number): MetricFamily {
  return { name, type, help, samples: [{ value }] };
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** Renders families in the Prometheus text format; a family with an invalid name is a programming error. */
export function renderMetrics(families: readonly MetricFamily[]): string {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const f of families) {
    if (!NAME.test(f.name) || seen.has(f.name)) throw new Error(`bad or repeated metric name ${JSON.stringify(f.name)}`);
    seen.add(f.name);
    out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels ?? {});
      for (const [k] of labels) if (!LABEL.test(k) || k.startsWith('__')) throw new Error(`bad label name ${JSON.stringify(k)} on ${f.name}`);
      const text = labels.length ? `{${labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}` : '';
      out.push(`${f.name}${text} ${formatValue(s.value)}`);
    }
  }
  return out.join('\n') + '\n';
}

/** The parts /readyz reports on, in the order a node comes up. */
export const READINESS_PARTS = ['etcd', 'lease', 'dataplane', 'routes', 'links', 'nftables', 'policy', 'backend', 'subnet.env'] as const;

export interface AgentCounters {
  lease_renewals_total: number;
  lease_reacquisitions_total: number;
  program_total: number;
  program_errors_total: number;
  backend_switches_total: number;
  config_refusals_total: number;
}

export interface NodeMetricsView {
  failing: readonly FailingPart[];
  peers: number;
  backend: string | undefined;
  dataplane: ReconcilerStatus | undefined;
  counters: AgentCounters;
  /** Requests the subnet manager sent to etcd, by call; absent with another control plane. */
  etcdRequests?: Readonly<Record<string, number>>;
  /** Families beyond the agent's own: the running backend's (udp loop counters, BGP sessions) and NetworkPolicy's. */
  extraFamilies: readonly MetricFamily[];
}

/** Every family the agent exports, from a view of its state at scrape time. */
export function nodeMetrics(v: NodeMetricsView): MetricFamily[] {
  const c = v.counters;
  const dp = v.dataplane;
  return [
    single('weft_ready', 'gauge', '1 when every part of the desired state is applied (what /readyz says)', v.failing.length ? 0 : 1),
    {
      name: 'weft_part_failing', type: 'gauge', help: 'Problems keeping each part of the desired state from being applied (0 when it is)',
      samples: READINESS_PARTS.map((part) => ({ labels: { part }, value: v.failing.filter((f) => f.part === part).length })),
    },
    single('weft_peers', 'gauge', 'Peer leases this node programs', v.peers),
    { name: 'weft_backend_info', type: 'gauge', help: 'The backend this node runs', samples: v.backend ? [{ labels: { backend: v.backend }, value: 1 }] : [] },
    single('weft_dataplane_in_sync', 'gauge', '1 when the kernel holds the latest desired links, addresses, routes, neighbours and FDB entries', dp?.inSync ? 1 : 0),
    single('weft_dataplane_conflicts', 'gauge', 'Routes weft should install whose destination a route it does not own holds', dp?.conflicts.length ?? 0),
    single('weft_dataplane_refused_changes', 'gauge', 'Changes the kernel refused in the last reconcile', dp?.failures.length ?? 0),
    {
      name: 'weft_dataplane_last_error_info', type: 'gauge', help: 'The last reconcile error as a label; no sample when the last run succeeded',
      samples: dp?.lastError ? [{ labels: { error: dp.lastError }, value: 1 }] : [],
    },
    single('weft_dataplane_reconciles_total', 'counter', 'Reconciler runs (desired-state changes, kernel events, resync)', dp?.runs ?? 0),
    single('weft_program_total', 'counter', 'Programming passes (desired state recomputed and applied)', c.program_total),
    single('weft_program_errors_total', 'counter', 'Programming passes in which some part failed', c.program_errors_total),
    single('weft_lease_renewals_total', 'counter', "Renewals of this node's subnet lease", c.lease_renewals_total),
    single('weft_lease_reacquisitions_total', 'counter', "Times this node's lease vanished and was acquired again", c.lease_reacquisitions_total),
    single('weft_backend_switches_total', 'counter', 'Live backend switches after a net-conf change', c.backend_switches_total),
    single('weft_config_refusals_total', 'counter', 'net-conf changes refused (invalid, or a change of Network)', c.config_refusals_total),
    ...(v.etcdRequests
      ? [{
          name: 'weft_etcd_requests_total', type: 'counter' as const, help: "Requests the subnet manager sent to etcd, by call (unary calls, each try, and stream creations)",
          samples: Object.entries(v.etcdRequests).map(([call, value]) => ({ labels: { call }, value })),
        }]
      : []),
    ...v.extraFamilies,
  ];
}
