// Where weft is installed, found from this module: works from src/ (tests),
// from dist/ and through the symlink `npm link` makes.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: { root: string; version: string } | undefined;

function find(): { root: string; version: string } {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      const meta = JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string; version?: string };
      if (meta.name === 'weft') return (cached = { root: dir, version: meta.version ?? '0.0.0' });
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find weft\'s package.json above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

/** The directory holding weft's package.json. */
export function packageRoot(): string {
  return find().root;
}

/** weft's version, from package.json. */
export function weftVersion(): string {
  return find().version;
}
