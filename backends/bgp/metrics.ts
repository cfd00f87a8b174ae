// BIRD's BGP sessions as Prometheus families.
import type { MetricFamily } from '../../src/agent/metrics.js';
import type { BgpSession } from './status.js';

export function bgpMetrics(configured: number, sessions: readonly BgpSession[]): MetricFamily[] {
  return [
    { name: 'weft_bgp_sessions_configured', type: 'gauge', help: 'BGP sessions in the BIRD config in force', samples: [{ value: configured }] },
    {
      name: 'weft_bgp_session_established', type: 'gauge', help: '1 when the BGP session is Established, by session and peer',
      samples: sessions.map((s) => ({ labels: { session: s.name, peer: s.peer }, value: s.state === 'Established' ? 1 : 0 })),
    },
    {
      name: 'weft_bgp_session_state_info', type: 'gauge', help: "Each BGP session's state as BIRD reports it (Established, Active, Connect, Idle, ...)",
      samples: sessions.map((s) => ({ labels: { session: s.name, peer: s.peer, state: s.state }, value: 1 })),
    },
    {
      name: 'weft_bgp_routes_imported', type: 'gauge', help: 'Routes imported from each BGP session',
      samples: sessions.map((s) => ({ labels: { session: s.name, peer: s.peer }, value: s.importedRoutes })),
    },
  ];
}
