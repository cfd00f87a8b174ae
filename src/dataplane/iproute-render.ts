// iproute2 syntax for the diff's typed changes: one op becomes one line of
// an `ip -batch` or `bridge -batch` run. The values were checked before
// planning (desired-check.ts), so they go into the line verbatim.
import type { Op } from './diff.js';
import { WEFT_ROUTE_PROTO } from './state.js';

/** The batch line for `op`; also how a change is named in logs and in /readyz failures. */
export function renderOp(op: Op): string {
  switch (op.target) {
    case 'link':
      if (op.action === 'del') return `link del dev ${op.dev}`;
      if (op.action === 'set') {
        return `link set dev ${op.dev}${op.mtu ? ` mtu ${op.mtu}` : ''}${op.mac ? ` address ${op.mac}` : ''}${op.up ? ' up' : ''}`;
      }
      return `link add name ${op.dev}${op.mac ? ` address ${op.mac}` : ''}${op.mtu ? ` mtu ${op.mtu}` : ''}`
        + ` type vxlan id ${op.tunnel.vni} dstport ${op.tunnel.port} local ${op.tunnel.local} dev ${op.tunnel.dev} nolearning`;
    case 'addr':
      return `addr ${op.action === 'add' ? 'replace' : 'del'} ${op.cidr} dev ${op.dev}`;
    case 'neigh':
      return op.action === 'add'
        ? `neigh replace ${op.ip} lladdr ${op.mac} dev ${op.dev} nud permanent`
        : `neigh del ${op.ip} dev ${op.dev}`;
    case 'fdb':
      return op.action === 'add'
        ? `fdb replace ${op.mac} dev ${op.dev} dst ${op.dst} self permanent`
        : `fdb del ${op.mac} dev ${op.dev} dst ${op.dst} self`;
    case 'route':
      if (op.action === 'del') {
        return `route del ${op.dst}${op.metric !== undefined ? ` metric ${op.metric}` : ''} table main proto ${WEFT_ROUTE_PROTO}`;
      }
      return `route replace ${op.dst}${op.via ? ` via ${op.via}` : ''}${op.dev ? ` dev ${op.dev}` : ''}${op.onlink ? ' onlink' : ''}`
        + ` table main proto ${WEFT_ROUTE_PROTO}`;
  }
}
