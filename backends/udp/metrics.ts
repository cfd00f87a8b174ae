// The udp loop's counters as Prometheus families: packets and bytes per
// stage of the path, drops by direction and reason, ICMP errors sent.
import type { MetricFamily } from '../../src/agent/metrics.js';
import type { UdpCounters } from './native.js';

/** Packets and bytes per stage: what the loop read from the TUN device and the socket, and what it wrote. */
const STAGES: { stage: string; packets: keyof UdpCounters; bytes: keyof UdpCounters }[] = [
  { stage: 'tun_read', packets: 'tunRxPackets', bytes: 'tunRxBytes' },
  { stage: 'udp_sent', packets: 'udpTxDatagrams', bytes: 'udpTxBytes' },
  { stage: 'udp_received', packets: 'udpRxDatagrams', bytes: 'udpRxBytes' },
  { stage: 'tun_written', packets: 'udpRxDelivered', bytes: 'tunTxBytes' },
];

const ICMP: { type: string; counter: keyof UdpCounters }[] = [
  { type: 'unreachable', counter: 'icmpUnreachable' },
  { type: 'time_exceeded', counter: 'icmpTimeExceeded' },
  { type: 'too_big', counter: 'icmpTooBig' },
  { type: 'rate_limited', counter: 'icmpRateLimited' },
];

export function udpMetrics(c: UdpCounters): MetricFamily[] {
  const n = (k: keyof UdpCounters): number => c[k] as number;
  return [
    { name: 'weft_udp_packets_total', type: 'counter', help: 'Packets through the udp loop, by stage', samples: STAGES.map((s) => ({ labels: { stage: s.stage }, value: n(s.packets) })) },
    { name: 'weft_udp_bytes_total', type: 'counter', help: 'Bytes through the udp loop, by stage', samples: STAGES.map((s) => ({ labels: { stage: s.stage }, value: n(s.bytes) })) },
    {
      name: 'weft_udp_drops_total', type: 'counter', help: 'Packets the udp loop dropped, by direction and reason',
      samples: [
        ...Object.entries(c.dropsInbound).map(([reason, value]) => ({ labels: { direction: 'inbound', reason }, value })),
        ...Object.entries(c.dropsOutbound).map(([reason, value]) => ({ labels: { direction: 'outbound', reason }, value })),
      ],
    },
    { name: 'weft_udp_kernel_drops_total', type: 'counter', help: 'Datagrams the kernel dropped before the loop read them (socket buffer full)', samples: [{ value: c.udpRxKernelDrops }] },
    { name: 'weft_udp_icmp_total', type: 'counter', help: 'ICMP errors the udp loop generated, by type', samples: ICMP.map((i) => ({ labels: { type: i.type }, value: n(i.counter) })) },
  ];
}
