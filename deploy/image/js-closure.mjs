#!/usr/bin/env node
// Copies an ES module and everything it imports into OUT, keeping paths
// relative to ROOT: local files one by one, packages from node_modules whole
// (with their own dependencies). Used for the CNI plugin, which must run on a
// node from a small self-contained directory.
//
// usage: node js-closure.mjs ROOT ENTRY OUT   (ENTRY relative to ROOT)
import { cpSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';

const [root, entry, out] = process.argv.slice(2);
if (!root || !entry || !out) {
  process.stderr.write('usage: node js-closure.mjs ROOT ENTRY OUT\n');
  process.exit(2);
}

// Static imports, re-exports, side-effect imports and literal dynamic imports.
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(?\s*)(['"])([^'"\n]+)\1/g;
const builtins = new Set(builtinModules);

const files = new Set();
const packages = new Set();
const queue = [resolve(root, entry)];
while (queue.length) {
  const file = queue.pop();
  if (files.has(file)) continue;
  if (!existsSync(file)) throw new Error(`${relative(root, file)} is imported but does not exist (is the build current?)`);
  files.add(file);
  for (const m of readFileSync(file, 'utf8').matchAll(SPECIFIER)) {
    const spec = m[2];
    if (spec.startsWith('node:') || builtins.has(spec)) continue;
    if (spec.startsWith('.')) queue.push(resolve(dirname(file), spec));
    else addPackage(spec);
  }
}

function addPackage(spec) {
  const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
  if (packages.has(name)) return;
  const dir = join(root, 'node_modules', name);
  if (!existsSync(join(dir, 'package.json'))) throw new Error(`package ${name} is imported but not installed`);
  packages.add(name);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  for (const dep of Object.keys(pkg.dependencies ?? {})) addPackage(dep);
}

for (const file of files) {
  const target = join(out, relative(root, file));
  mkdirSync(dirname(target), { recursive: true });
  cpSync(file, target);
}
for (const name of packages) {
  cpSync(join(root, 'node_modules', name), join(out, 'node_modules', name), { recursive: true, dereference: true });
}
process.stdout.write(`${files.size} files, packages: ${[...packages].join(', ') || 'none'}\n`);
