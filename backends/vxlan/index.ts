// vxlan backend: kernel VXLAN device with static FDB and neighbour entries.
// The pure part (desired state) lives in desired.ts.
import type { Logger } from 'pino';
import { extSides, MIN_DEVICE_MTU, type BackendFactory, type ExternalInterface } from '../backend.js';
import { NodeFamilies, PeerMemo } from '../peers.js';
import { parseVxlanOptions, type VxlanOptions } from './options.js';
import type { Family } from '../../src/core/cidr.js';
import { WeftError } from '../../src/errors.js';
import { VXLAN, vxlanDesired, vxlanMtu, vxlanOverhead, type VxlanBackendData, type VxlanPeerPart } from './desired.js';
import { vtepMac } from './mac.js';


export const createVxlanBackend: BackendFactory = async (ctx) => {
  const options = parseVxlanOptions(ctx.config.backend.raw);
  const families = new NodeFamilies(ctx.logger);
  const memos = { 4: new PeerMemo<VxlanPeerPart>(), 6: new PeerMemo<VxlanPeerPart>() };
  // The interface's side and VTEP MAC of each family the node may run (IPv6 only with EnableIPv6).
  const sides = extSides(ctx.ext, Boolean(ctx.config.ipv6)).map((ext) => ({
    ext,
    // Node name and address together: lab nodes may share a hostname, and a
    // node that changes address publishes a new lease anyway.
    mac: vtepMac(`${ctx.nodeName}/${ext.publicIP}`),
    mtu: checkedMtu(options, ext, ctx.logger),
  }));
  const sideOf = (family: Family) => sides.find((s) => s.ext.ip.family === family)!;
  const backendData = (family: Family): VxlanBackendData => ({ VNI: options.vni, VtepMAC: sideOf(family).mac });
  return {
    type: VXLAN,
    // Pods have one MTU for both families: the smaller tunnel's.
    mtu: Math.min(...sides.map((s) => s.mtu)),
    backendData: backendData(ctx.ext.ip.family),
    ...(sides.length > 1 ? { backendV6Data: backendData(6) } : {}),
    tunnelPort: options.port,
    desired: (own, peers) =>
      families.desired(own, peers, ctx.ext, (v) => vxlanDesired(v.own, v.peers, { options, ext: v.ext, mac: sideOf(v.family).mac, warnings: v.warnings, memo: memos[v.family], borrowed: v.borrowed })),
    // The devices and entries are the reconciler's to keep or remove.
    stop: async () => {},
  };
};

/** The tunnel MTU over `ext`: refused when the underlay cannot carry the headers, warned when it fragments. */
function checkedMtu(options: VxlanOptions, ext: ExternalInterface, logger: Logger): number {
  const mtu = vxlanMtu(options, ext);
  const overhead = vxlanOverhead(ext);
  const min = MIN_DEVICE_MTU[ext.ip.family];
  if (mtu < min) {
    throw new WeftError(`${ext.name} has MTU ${ext.mtu}, too small for IPv${ext.ip.family} VXLAN (${overhead} bytes of headers)`, `raise the MTU of ${ext.name}`);
  }
  if (mtu > ext.mtu - overhead) {
    logger.warn(
      { mtu, underlayMtu: ext.mtu },
      `Backend.MTU ${mtu} plus ${overhead} bytes of IPv${ext.ip.family} VXLAN headers exceeds ${ext.name}'s MTU ${ext.mtu}; tunnelled packets will be fragmented`,
    );
  }
  return mtu;
}
