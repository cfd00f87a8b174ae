// The CLI's contract for user errors: one line on stderr naming the cause and
// the fix, a non-zero exit, never a stack trace. Runs the built entry point
// (npm test builds first).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { formatLogLine, parseLogFormat } from '../../src/cli/log.js';

const entry = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

function weft(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // the runner's hooks are not part of the CLI
  const r = spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8', env, timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function oneLineError(t: Test, r: ReturnType<typeof weft>, pattern: RegExp): void {
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

t.test('weft --version prints the package version', async (t) => {
  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  const r = weft('--version');
  t.equal(r.code, 0);
  t.equal(r.stdout, `weft ${version}\n`);
});

t.test('`weft` on PATH the way the README says (npm install -g .), and the entry is executable', async (t) => {
  t.ok((statSync(entry).mode & 0o111) !== 0, 'the build leaves dist/src/cli/main.js executable');
  const prefix = mkdtempSync(join(tmpdir(), 'weft-global-'));
  t.teardown(() => rmSync(prefix, { recursive: true, force: true }));
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const env = { ...process.env, NODE_OPTIONS: '' };
  // A global install of a folder is a link: nothing is fetched and no install script runs.
  const install = spawnSync('npm', ['install', '-g', '--prefix', prefix, '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error', root], { encoding: 'utf8', env, timeout: 120_000 });
  t.equal(install.status, 0, `npm install -g . works: ${install.stderr.trim().split('\n').pop() ?? ''}`);
  const help = spawnSync('weft', ['--help'], { encoding: 'utf8', env: { ...env, PATH: `${join(prefix, 'bin')}:${process.env.PATH}` }, timeout: 30_000 });
  t.equal(help.status, 0, 'weft --help runs through PATH');
  t.match(help.stdout, /usage: weft <command>/);
});

t.test('--log-format: plain lines for people, JSON for collectors, one line for a wrong value', async (t) => {
  t.equal(parseLogFormat(undefined, true), 'text', 'a terminal gets plain lines');
  t.equal(parseLogFormat(undefined, false), 'json', 'a pipe or file gets JSON');
  t.equal(parseLogFormat('json', true), 'json', '--log-format json wins over the terminal');
  t.throws(() => parseLogFormat('xml'), /--log-format "xml" is not a log format; use --log-format text or --log-format json|is not a log format/);
  const line = formatLogLine(JSON.stringify({ level: 40, time: Date.UTC(2026, 0, 2, 3, 4, 5, 6), pid: 1, name: 'weft-agent', msg: 'cannot read network config', node: 'n1', retryInMs: 200, why: 'two words' }));
  t.equal(line, '03:04:05.006 WARN  cannot read network config node=n1 retryInMs=200 why="two words"');
  oneLineError(t, weft('agent', '--log-format', 'xml'), /--log-format "xml" is not a log format/);
});

t.test('weft bench compare: a bad flag is one line naming what is valid, before any lab is built', async (t) => {
  oneLineError(t, weft('bench', 'compare', '--backends', 'host-gw,flannel'), /--backends: unknown backend "flannel"; use any of host-gw, vxlan, udp, bgp/);
  oneLineError(t, weft('bench', 'compare', '--seconds', '0'), /--seconds "0" is not a whole number >= 1/);
  t.match(weft('bench', 'compare', '--help').stdout, /usage: weft bench compare \[--backends/);
});
