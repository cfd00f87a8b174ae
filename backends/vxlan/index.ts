// vxlan backend: kernel VXLAN device with static FDB and neighbour entries.
// The pure part (desired state) lives in desired.ts.
import type { BackendFactory } from '../backend.js';
import { PeerWarnings } from '../peer-warnings.js';
import { parseVxlanOptions } from './options.js';
import { WeftError } from '../../src/errors.js';
import { VXLAN, vxlanDesired, vxlanMtu, vxlanOverhead, type VxlanBackendData, type VxlanSetup } from './desired.js';
import { vtepMac } from './mac.js';

/** Smallest MTU the kernel allows on an IPv4 device. */
const MIN_MTU = 68;

export const createVxlanBackend: BackendFactory = async (ctx) => {
  const options = parseVxlanOptions(ctx.config.backend.raw);
  const { ext } = ctx;
  const mtu = vxlanMtu(options, ext);
  if (mtu < MIN_MTU) {
    throw new WeftError(`${ext.name} has MTU ${ext.mtu}, too small for VXLAN (${vxlanOverhead(ext)} bytes of headers)`, `raise the MTU of ${ext.name}`);
  }
  if (mtu > ext.mtu - vxlanOverhead(ext)) {
    ctx.logger.warn(
      { mtu, underlayMtu: ext.mtu },
      `Backend.MTU ${mtu} plus ${vxlanOverhead(ext)} bytes of VXLAN headers exceeds ${ext.name}'s MTU ${ext.mtu}; tunnelled packets will be fragmented`,
    );
  }
  // Node name and address together: lab nodes may share a hostname, and a
  // node that changes address publishes a new lease anyway.
  const mac = vtepMac(`${ctx.nodeName}/${ext.publicIP}`);
  const setup: VxlanSetup = { options, ext, mac, warnings: new PeerWarnings(ctx.logger) };
  const backendData: VxlanBackendData = { VNI: options.vni, VtepMAC: mac };
  return {
    type: VXLAN,
    mtu,
    backendData,
    tunnelPort: options.port,
    desired: (own, peers) => vxlanDesired(own, peers, setup),
    // The device and entries are the reconciler's to keep or remove.
    stop: async () => {},
  };
};
