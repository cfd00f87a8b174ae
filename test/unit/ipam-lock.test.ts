// The IPAM lock across processes: 50 plugin-like processes allocating at once
// never hand out one address twice, and a holder killed with SIGKILL leaves
// the lock free (the kernel drops flock(2) locks with the descriptor).
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lockFileSync } from '../../src/ipam/lock.js';
import { readState, storePaths } from '../../src/ipam/store.js';
import { transpileForChildren } from '../support/transpiled.js';

const build = transpileForChildren(['src/core', 'src/ipam', 'src/errors.ts'], 'ipam-lock');
t.teardown(build.cleanup);

// One ADD, as the CNI plugin will make it: lock, read, allocate, write, print the address.
writeFileSync(join(build.dir, 'allocate-one.mjs'), `
import { Cidr } from './src/core/cidr.js';
import { allocate } from './src/ipam/allocator.js';
import { storePaths, updateState } from './src/ipam/store.js';
const [root, id] = process.argv.slice(2);
const ranges = [{ subnet: Cidr.parse('10.244.3.0/24') }];
const address = updateState(storePaths(root, 'net'), (state) => {
  const r = allocate(state, ranges, { containerId: id, ifname: 'eth0', netns: '', now: new Date() });
  return { state: r.state, result: r.allocated[0].address };
});
process.stdout.write(address);
`);

// Takes the lock, says so, and holds it until killed.
writeFileSync(join(build.dir, 'hold.mjs'), `
import { lockFileSync } from './src/ipam/lock.js';
lockFileSync(process.argv[2]);
process.stdout.write('held');
setInterval(() => {}, 60_000);
`);

// Without the test runner's NODE_OPTIONS: its process-info hook costs each child more than the work.
const { NODE_OPTIONS: _runnerHooks, ...childEnv } = process.env;

function run(script: string, args: string[]): Promise<{ out: string; code: number | null; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(build.dir, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.on('close', (code) => resolve({ out, code, err }));
  });
}

t.test('50 processes allocating at once get 50 distinct addresses, all recorded', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'weft-ipam-lock-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => run('allocate-one.mjs', [root, `c${i}`])));
  const failed = results.filter((r) => r.code !== 0).map((r) => r.err.split('\n')[0]);
  const addresses = new Set(results.map((r) => r.out));
  const recorded = new Set(readState(storePaths(root, 'net').state).allocations.map((a) => a.address));
  t.same([failed, addresses.size, recorded.size, [...addresses].every((a) => recorded.has(a))], [[], 50, 50, true]);
});

t.test('a holder killed with SIGKILL does not leave the lock held', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'weft-ipam-lock-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const lock = join(root, 'lock');
  const child = spawn(process.execPath, [join(build.dir, 'hold.mjs'), lock], { stdio: ['ignore', 'pipe', 'inherit'], env: childEnv });
  t.teardown(() => void child.kill('SIGKILL'));
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  const whileHeld = lockFileSync(lock, { wait: false });
  const exited = new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  child.kill('SIGKILL');
  const signal = await exited;
  const afterKill = lockFileSync(lock, { wait: false });
  afterKill?.release();
  t.same([whileHeld === undefined, signal, afterKill !== undefined], [true, 'SIGKILL', true]);
});
