// The IPAM store: empty when missing, a clear error when damaged, and crash
// safe: a write stopped after any one of its file-system calls leaves the old
// state or the new one.
import t from 'tap';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeAtomicFs, type AtomicFs } from '../../src/core/atomic-write.js';
import { Cidr } from '../../src/core/cidr.js';
import { allocate } from '../../src/ipam/allocator.js';
import { emptyState, type IpamState } from '../../src/ipam/state.js';
import { readState, storePaths, updateState, writeState } from '../../src/ipam/store.js';
import { errorOf } from '../support/error-of.js';

const NOW = new Date('2026-01-01T00:00:00Z');
const RANGES = [{ subnet: Cidr.parse('10.244.3.0/24') }];

function tmp(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'weft-ipam-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function withOne(state: IpamState, id: string): IpamState {
  return allocate(state, RANGES, { containerId: id, ifname: 'eth0', netns: '', now: NOW }).state;
}

t.test('a missing store is empty', async (t) => {
  t.same(readState(join(tmp(t), 'none', 'state.json')), emptyState());
});

t.test('a state written reads back the same', async (t) => {
  const file = join(tmp(t), 'net', 'state.json');
  const state = withOne(emptyState(), 'a');
  writeState(file, state);
  t.same(readState(file), state);
});

t.test('a damaged store is one error naming the file and the fix, never an empty state', async (t) => {
  const dir = tmp(t);
  const cases = ['{"version":1,"allocations":[', '[]', '{"version":9}', '{"version":1,"allocations":{},"reservations":[],"borrowedOut":[],"lastPosition":{}}',
    '{"version":1,"allocations":[{"address":"nope"}],"reservations":[],"borrowedOut":[],"lastPosition":{}}', ''];
  const messages = cases.map((text, i) => {
    const file = join(dir, `s${i}.json`);
    writeFileSync(file, text);
    return errorOf(() => readState(file)).replace(file, 'FILE');
  });
  t.same(messages.map((m) => /^IPAM state FILE is corrupt \(.+\); weft will not guess which addresses are in use; restore the file, or remove it once no pod on this node holds an address from it$/.test(m)), cases.map(() => true), messages.join('\n'));
});

t.test('network names that could leave the store directory are refused', async (t) => {
  t.same(['../etc', '..', 'a/b', ''].map((n) => errorOf(() => storePaths('/x', n)).startsWith('network name')), [true, true, true, true]);
});

t.test('updateState writes only when the state changed', async (t) => {
  const paths = storePaths(tmp(t), 'net');
  updateState(paths, (s) => ({ state: s, result: undefined }));
  t.same(readdirSync(paths.dir), ['lock'], 'no state file for a change that changed nothing');
});

/** A file system that dies after `calls` calls: every later call (cleanup included) fails, as in a killed process. */
function dyingAfter(calls: number): { io: AtomicFs; made: () => number } {
  let n = 0;
  const gate = <A extends unknown[], R>(fn: (...a: A) => R) => (...a: A): R => {
    if (n >= calls) throw new Error('killed');
    n++;
    return fn(...a);
  };
  const io: AtomicFs = {
    mkdir: gate(nodeAtomicFs.mkdir),
    open: gate(nodeAtomicFs.open),
    write: gate(nodeAtomicFs.write),
    fsync: gate(nodeAtomicFs.fsync),
    close: gate(nodeAtomicFs.close),
    rename: gate(nodeAtomicFs.rename),
    rm: gate(nodeAtomicFs.rm),
  };
  return { io, made: () => n };
}

t.test('crash safety: stopped after any call of a write, the store reads back as the old or the new state', async (t) => {
  const dir = tmp(t);
  const total = dyingAfter(Infinity);
  writeState(join(dir, 'count.json'), emptyState(), total.io);
  const outcomes: string[] = [];
  for (const prior of [false, true]) {
    for (let k = 0; k <= total.made(); k++) {
      const file = join(dir, `${prior}-${k}`, 'state.json');
      const old = prior ? withOne(emptyState(), 'old') : emptyState();
      if (prior) writeState(file, old);
      const next = withOne(old, 'new');
      try {
        writeState(file, next, dyingAfter(k).io);
      } catch {
        // the simulated kill
      }
      let seen: string;
      try {
        const back = JSON.stringify(readState(file));
        seen = back === JSON.stringify(next) ? 'new' : back === JSON.stringify(old) ? 'old' : `neither: ${back}`;
      } catch (err) {
        seen = `unreadable: ${(err as Error).message}`;
      }
      outcomes.push(seen);
    }
  }
  t.same(outcomes.filter((o) => o !== 'old' && o !== 'new'), [], `every stop point (${total.made()} calls per write, with and without a prior state)`);
  t.equal(outcomes.at(-1), 'new', 'a write that completes leaves the new state');
});
