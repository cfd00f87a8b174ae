// The product's Node-API addon (native/, built by node-gyp at `npm ci`): the
// udp backend's hot loop and the data plane's netlink event socket both live
// in it. The tests' exports are a second binding, built beside it.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { WeftError } from '../errors.js';
import { packageRoot } from './package-root.js';

export const NATIVE_ADDON_FILE = join('native', 'build', 'Release', 'weft_udp.node');

/**
 * Loads the addon (Node caches it), or throws a WeftError naming how to build
 * it; `user` says who needs it ("the udp backend"). `file` is for the tests,
 * whose own binding is built beside the product's.
 */
export function loadNativeAddon<T>(user: string, file: string = NATIVE_ADDON_FILE): T {
  const path = join(packageRoot(), file);
  if (!existsSync(path)) {
    throw new WeftError(
      `${user}'s native addon (${file}) is not built`,
      'run `npm ci` (or `npx node-gyp rebuild -C native`) on a machine with a C compiler and make',
    );
  }
  return createRequire(import.meta.url)(path) as T;
}
