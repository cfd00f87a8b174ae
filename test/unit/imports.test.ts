// The house's walls, read from the import statements: the control plane and
// the data plane never import each other, config knows no backend, and the
// agent and CLI reach backends only through the registry.
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const path = join(dir, name);
    return statSync(join(ROOT, path)).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/** Every relative import of a file, as a repository path ("src/subnet/cidr.ts"). */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g)].map((m) => m[1] ?? m[2]!);
  return specs.filter((s) => s.startsWith('.')).map((s) => relative(ROOT, resolve(ROOT, dirname(file), s)).replace(/\.js$/, '.ts'));
}

/** "from -> to" for every import from a file under `from` into `to` (both folder prefixes). */
function crossings(from: string, to: RegExp, except: RegExp = /^$/): string[] {
  return sources(from).flatMap((f) => importsOf(f).filter((i) => to.test(i) && !except.test(i)).map((i) => `${f} -> ${i}`));
}

t.test('import rules', async (t) => {
  t.same(crossings('src/subnet', /^src\/dataplane\//), [], 'src/subnet never imports src/dataplane');
  t.same(crossings('src/dataplane', /^src\/subnet\//), [], 'src/dataplane never imports src/subnet');
  t.same(crossings('src/config', /^backends\//), [], 'src/config never imports backends/');
  t.same(crossings('src/agent', /^backends\//, /^backends\/(registry|backend)\.ts$/), [], 'src/agent imports no specific backend, only the registry and the contract');
  t.same(crossings('src/cli', /^backends\//, /^backends\/(registry|backend)\.ts$/), [], 'src/cli imports no specific backend, only the registry and the contract');
  t.same(crossings('src/agent', /^src\/subnet\/(etcd|kube)\//).filter((c) => !c.startsWith('src/agent/subnet-source.ts ')), [],
    'in src/agent only subnet-source.ts names etcd or kube; the agent sees SubnetManager and NetConfSource');
  const backendFolders = ['hostgw', 'vxlan', 'udp', 'bgp'];
  const between = backendFolders.flatMap((b) => crossings(`backends/${b}`, new RegExp(`^backends/(${backendFolders.filter((o) => o !== b).join('|')})/`)));
  t.same(between, [], 'no backend imports another backend');
  t.same([...crossings('src', /^test\//), ...crossings('backends', /^test\//)], [], 'the product imports nothing from test/, so never loads the test binding');
});
