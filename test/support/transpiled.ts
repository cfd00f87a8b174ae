// Plain JavaScript copies of src/ directories for tests that start many child
// processes: loading TypeScript through the test runner's loader costs each
// child seconds, a transpiled copy a few milliseconds. The copy lives under
// node_modules/.cache so the children resolve weft's dependencies, its
// package root and its native addon as the sources do.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import ts from 'typescript';
import { packageRoot } from '../../src/core/package-root.js';

/** Transpiles `paths` (files or directories under the package root) into a fresh directory, removed by `cleanup`. */
export function transpileForChildren(paths: string[], label: string): { dir: string; cleanup: () => void } {
  const root = packageRoot();
  const cache = join(root, 'node_modules', '.cache');
  // Copies left by a run that died before its teardown (its pid is gone).
  for (const old of existsSync(cache) ? readdirSync(cache) : []) {
    const pid = Number(/^weft-test-.+-(\d+)$/.exec(old)?.[1]);
    if (pid && !alive(pid)) rmSync(join(cache, old), { recursive: true, force: true });
  }
  const dir = join(cache, `weft-test-${label}-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  const files: string[] = [];
  const walk = (p: string) => {
    if (statSync(p).isDirectory()) for (const e of readdirSync(p)) walk(join(p, e));
    else if (p.endsWith('.ts')) files.push(p);
  };
  for (const p of paths) walk(join(root, p));
  for (const file of files) {
    const out = join(dir, relative(root, file)).replace(/\.ts$/, '.js');
    const js = ts.transpileModule(readFileSync(file, 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, js);
  }
  // ESM, as the package's own "type" says.
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
