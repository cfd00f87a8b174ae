// /readyz's parts: an unusable etcd is its own part, next to whatever else
// fails; a blocked lease says why instead of "no subnet lease yet".
import t from 'tap';
import { failingParts } from '../../src/agent/node-status.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';

const own: Lease = { subnet: Cidr.parse('10.244.3.0/24'), attrs: { publicIP: IP.parse('192.0.2.11'), backendType: 'host-gw', backendData: null } };
const etcd = { part: 'etcd', reason: 'etcd at http://192.0.2.1:2379 has no leader (the member lost its quorum) while watching leases; bring a majority of the etcd members back' };
const applied = [{ part: 'routes', state: 'applied' }] as never;

t.test('readiness parts', async (t) => {
  t.same(failingParts({ own, dataplane: applied, backendType: 'host-gw', backendReason: undefined }), [], 'ready when everything is applied and etcd is usable');
  t.same(failingParts({ own, dataplane: applied, backendType: 'host-gw', backendReason: undefined, controlPlane: etcd }), [etcd], 'an unusable etcd alone makes the node not ready');
  t.same(
    failingParts({ own: undefined, dataplane: undefined, backendType: undefined, backendReason: undefined, controlPlane: etcd }),
    [etcd, { part: 'lease', reason: 'no subnet lease yet' }],
    'before the first lease, both etcd and the lease are named',
  );
  t.same(
    failingParts({ own, dataplane: applied, backendType: 'host-gw', backendReason: undefined, leaseBlocked: 'this node\'s subnet 10.244.3.0/24 is leased to node n2' }),
    [{ part: 'lease', reason: 'this node\'s subnet 10.244.3.0/24 is leased to node n2' }],
    'a blocked lease is the lease part, with its reason, while the old data plane stays applied',
  );
});
