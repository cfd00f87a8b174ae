// The BIRD driver's user-facing failures, without starting a daemon: a
// missing binary, an unreachable --bird-socket, a config `bird -p` rejects.
import t from 'tap';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Bird } from '../../backends/bgp/bird.js';

const logger = pino({ level: 'silent' });

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'wbg-unit-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

t.test('no bird binary: one line naming the fix', async (t) => {
  const dir = await tempDir(t);
  await t.rejects(Bird.open({ dir, logger, execPrefix: ['env', 'PATH=/nonexistent'] }), {
    name: 'WeftError',
    message: /^BIRD is not installed \(no `bird` in PATH\); install BIRD 2 \(Debian: apt-get install bird2\) or pass --bird-socket PATH/,
  });
});

t.test('--bird-socket nobody answers on', async (t) => {
  const dir = await tempDir(t);
  const socket = join(dir, 'nobody.ctl');
  await t.rejects(Bird.open({ dir, logger, externalSocket: socket }), {
    name: 'WeftError',
    message: new RegExp(`^no BIRD answers on --bird-socket ${socket}; start BIRD 2 with \`-s\` on that path`),
  });
});

t.test('a control socket path too long for sun_path', async (t) => {
  const dir = await tempDir(t);
  await t.rejects(Bird.open({ dir: join(dir, 'x'.repeat(120)), logger }), { name: 'WeftError', message: /longer than 107 bytes/ });
});

t.test('a config BIRD rejects is never used, and reported once', async (t) => {
  const dir = await tempDir(t);
  const bird = await Bird.open({ dir, logger });
  const bad = 'router id 10.0.0.1;\nprotocol static { ipv4; route 10.1.0.0/16 via "quote; }\n';
  await t.rejects(bird.apply(bad), { name: 'WeftError', message: /^BIRD rejected the generated config \(.*bird\.conf\.new:\d+:\d+ .*\); the running config stays in force; the rejected file is / });
  await t.rejects(access(bird.configPath), 'bird.conf was not written');
  t.match(await readFile(`${bird.configPath}.rejected`, 'utf8'), /via "quote/);
  t.equal(await bird.apply(bad), false, 'the same rejected text is not retried or reported again');
  t.equal(bird.pid, undefined, 'no BIRD was started');
  await bird.stop({ keepRunning: false });
});
