import { WeftError } from '../errors.js';

export async function run(_argv: string[]): Promise<number> {
  throw new WeftError('weft agent is not built yet');
}
