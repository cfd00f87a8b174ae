// subnet.env as the CNI plugin reads it (the format lives in src/subnet/subnet-env.ts):
// every failure is a CniError naming the file.
import { readFileSync } from 'node:fs';
import { parseSubnetEnv, SubnetEnvError, type ParsedSubnetEnv } from '../subnet/subnet-env.js';
import { CniCode, CniError } from './errors.js';

/** subnet.env as the plugin uses it. */
export type NodeSubnet = ParsedSubnetEnv;

const MAX_BYTES = 4096;

/** Reads and checks subnet.env; every failure is a CniError naming the file and the key. */
export function readNodeSubnet(path: string): NodeSubnet {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new CniError(CniCode.tryAgainLater, `${path} does not exist yet; is the weft agent running on this node?`, 'the agent writes it once the node has a subnet');
    }
    throw new CniError(CniCode.ioFailure, `cannot read ${path} (${code ?? (err as Error).message})`);
  }
  if (text.length > MAX_BYTES) throw new CniError(CniCode.ioFailure, `${path} is larger than ${MAX_BYTES} bytes; it is not a subnet.env`);
  return parseNodeSubnet(text, path);
}

/** parseSubnetEnv, with each failure a CniError naming the file and the key. */
export function parseNodeSubnet(text: string, path: string): NodeSubnet {
  try {
    return parseSubnetEnv(text);
  } catch (err) {
    if (!(err instanceof SubnetEnvError)) throw err;
    throw new CniError(CniCode.ioFailure, `${path}: ${err.message}`, 'the weft agent rewrites this file; restart it');
  }
}
