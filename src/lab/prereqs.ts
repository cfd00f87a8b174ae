// Checks that the machine can run a lab before anything is created, so a
// missing piece is one line naming it and the fix, not a half-built lab.
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { debianPackage } from '../core/command.js';
import { WeftError } from '../errors.js';
import { CNI_PATH } from './cni.js';

const SETUP_FIX = 'install it with "bash scripts/setup.sh" as root (npm run demo runs it too)';

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function findProgram(name: string): string | undefined {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  return dirs.map((d) => join(d, name)).find(executable);
}

export function checkLabPrerequisites(opts: { needIperf3?: boolean; needSockperf?: boolean; agentEntry?: string } = {}): void {
  if (process.getuid?.() !== 0) {
    throw new WeftError('the lab needs root (it creates network namespaces)', 'rerun as root, e.g. with sudo');
  }
  const programs = ['ip', 'etcd', 'etcdctl', 'ping', ...(opts.needIperf3 ? ['iperf3'] : []), ...(opts.needSockperf ? ['sockperf'] : [])];
  for (const p of programs) {
    if (!findProgram(p)) throw new WeftError(`${p} is missing (Debian package ${debianPackage(p)})`, SETUP_FIX);
  }
  for (const plugin of ['bridge', 'host-local']) {
    if (!executable(join(CNI_PATH, plugin))) {
      throw new WeftError(`the CNI plugin ${CNI_PATH}/${plugin} is missing (Debian package containernetworking-plugins)`, SETUP_FIX);
    }
  }
  if (opts.agentEntry && !existsSync(opts.agentEntry)) {
    throw new WeftError(`weft is not built (${opts.agentEntry} is missing)`, 'run "npm run build"');
  }
}
