// scripts/setup.sh installs exactly the names in scripts/debian-packages.txt.
// A name Debian does not have breaks every fresh machine (and only fresh
// ones: a machine that already has the command never asks apt), so each
// name is looked up in apt's package lists here.
import t from 'tap';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);
const listFile = new URL('../../scripts/debian-packages.txt', import.meta.url);

function listedPackages(): string[] {
  return readFileSync(listFile, 'utf8')
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter((l) => l !== '');
}

/** The names among `names` that apt's lists hold (one apt-cache call for all). */
async function knownPackages(names: string[]): Promise<Set<string>> {
  // apt-cache exits non-zero when any name is unknown, but still prints the known ones.
  const out = await run('apt-cache', ['show', '--no-all-versions', ...names], { maxBuffer: 16 << 20 }).then(
    (r) => r.stdout,
    (err: { stdout?: string }) => err.stdout ?? '',
  );
  return new Set([...out.matchAll(/^Package: (\S+)$/gm)].map((m) => m[1]!));
}

t.test('every Debian package setup.sh installs exists in apt', async (t) => {
  const lists = readdirSync('/var/lib/apt/lists').filter((f) => f.endsWith('_Packages'));
  // An empty package list (a fresh image) would make every name look unknown.
  if (lists.length === 0) await run('apt-get', ['update', '-qq']);
  const names = listedPackages();
  const found = await knownPackages(names);
  const unknown = names.filter((n) => !found.has(n));
  t.ok(names.includes('gobgpd') && names.includes('bird2') && names.includes('etcd-server'), 'the list names the routing daemons the tests start');
  t.same(unknown, [], `scripts/debian-packages.txt names packages apt does not know: ${unknown.join(', ') || 'none'}`);
});
