// The CLI's contract for user errors: one line on stderr naming the cause and
// the fix, a non-zero exit, never a stack trace. Runs the built entry point
// (npm test builds first).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const entry = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

function weft(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // the runner's hooks are not part of the CLI
  const r = spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8', env, timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function oneLineError(t: Tap.Test, r: ReturnType<typeof weft>, pattern: RegExp): void {
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  t.equal(lines.length, 1, `exactly one line: ${JSON.stringify(r.stderr)}`);
  t.match(lines[0], pattern);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  t.notOk(r.code === 0, 'non-zero exit');
}

t.test('usage and unknown command', async (t) => {
  const help = weft('--help');
  t.equal(help.code, 0);
  t.match(help.stdout, /usage: weft <command>/);
  oneLineError(t, weft('frobnicate'), /unknown command "frobnicate"/);
});

t.test('bad flags are the user\'s to fix, not a bug report', async (t) => {
  const r = weft('agent', '--bogus');
  oneLineError(t, r, /Unknown option '--bogus'; see "weft agent --help"/);
  t.equal(r.code, 2);
  t.notMatch(r.stderr, /unexpected/);
});

t.test('unreachable etcd names the endpoint and the fix', async (t) => {
  const r = weft('leases', '--etcd-endpoints', 'http://127.0.0.1:1');
  oneLineError(t, r, /etcd at http:\/\/127\.0\.0\.1:1 is unreachable .*check --etcd-endpoints/);
  t.notMatch(r.stderr, /Resolution note/, 'grpc boilerplate trimmed');
});

t.test('missing net-conf file', async (t) => {
  oneLineError(t, weft('config', 'validate', '/nonexistent/net-conf.json'), /does not exist/);
});
