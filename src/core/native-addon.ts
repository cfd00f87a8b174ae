// The one Node-API addon (native/, built by node-gyp at `npm ci`): the udp
// backend's hot loop and the data plane's netlink event socket both live in it.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { WeftError } from '../errors.js';
import { packageRoot } from './package-root.js';

export const NATIVE_ADDON_FILE = join('native', 'build', 'Release', 'weft_udp.node');

/**
 * Loads the addon (Node caches it), or throws a WeftError naming how to build
 * it; `user` says who needs it ("the udp backend").
 */
export function loadNativeAddon<T>(user: string): T {
  const path = join(packageRoot(), NATIVE_ADDON_FILE);
  if (!existsSync(path)) {
    throw new WeftError(
      `${user}'s native addon (${NATIVE_ADDON_FILE}) is not built`,
      'run `npm ci` (or `npx node-gyp rebuild -C native`) on a machine with a C compiler and make',
    );
  }
  return createRequire(import.meta.url)(path) as T;
}
