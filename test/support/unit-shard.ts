// Runs one shard of the unit tests in this one process. Each unit test file
// started on its own costs tap about two seconds of loader start-up, which
// over some sixty files was most of the unit suite's time in CI; the files
// register their tests on tap's one root in turn, so the assertions and their
// names are the same as when each file runs alone (`npm run test:unit`).
import t from 'tap';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const UNIT_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'unit');

/** The unit test files of shard `index` (1-based) of `count`, alternating over the sorted names. */
export function unitShard(index: number, count: number): string[] {
  const files = readdirSync(UNIT_DIR)
    .filter((f) => f.endsWith('.test.ts'))
    .sort();
  return files.filter((_, i) => i % count === index - 1).map((f) => join(UNIT_DIR, f));
}

/**
 * Loads the shard's files inside one first test, so the root is never idle
 * between two imports: a file that adds a teardown to the root turns on tap's
 * end-when-idle, and a root that ended early would drop every later file's
 * tests ("cannot create subtest after parent test ends") and still exit 0.
 * The files' own tests queue behind this one and run after it.
 */
export async function runUnitShard(index: number, count: number): Promise<void> {
  const files = unitShard(index, count);
  t.test(`unit shard ${index} of ${count} loads all its files`, async (t) => {
    let loaded = 0;
    for (const file of files) {
      await import(pathToFileURL(file).href);
      loaded++;
    }
    t.equal(loaded, files.length);
  });
}
