import { WeftError } from '../errors.js';

export async function run(_argv: string[]): Promise<number> {
  throw new WeftError('weft config is not built yet');
}
