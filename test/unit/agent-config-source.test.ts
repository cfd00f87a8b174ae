// Following net-conf in a directory the way kubelet updates a mounted
// ConfigMap: the file is a symlink through `..data`, which is swapped atomically.
import { mkdtemp, mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { FileNetConfSource } from '../../src/agent/config-source.js';
import type { NetConfUpdate } from '../../src/config/source.js';

const HOST_GW = '{"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw"}}';
const VXLAN = '{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}';

/** Writes a new `..<version>` dir and swaps `..data` to it, as kubelet's atomic writer does. */
async function kubeletWrite(dir: string, version: number, text: string): Promise<void> {
  const target = join(dir, `..${version}`);
  await mkdir(target);
  await writeFile(join(target, 'net-conf.json'), text);
  await symlink(`..${version}`, join(dir, '..data_tmp'));
  await rename(join(dir, '..data_tmp'), join(dir, '..data'));
}

async function waitFor(cond: () => boolean, what: string, deadlineMs = 10_000): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > deadlineMs) throw new Error(`not within ${deadlineMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - start;
}

t.test('a ConfigMap-style symlink swap is seen at once; same text is not reported twice', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wag-cm-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await kubeletWrite(dir, 1, HOST_GW);
  await symlink('..data/net-conf.json', join(dir, 'net-conf.json'));

  const updates: NetConfUpdate[] = [];
  const stop = new AbortController();
  // A long poll: the change must come from the directory watch, not from polling.
  const source = new FileNetConfSource({ path: join(dir, 'net-conf.json'), logger: pino({ level: 'silent' }), pollMs: 600_000 });
  const watching = source.watch((u) => updates.push(u), stop.signal);
  t.teardown(() => stop.abort());

  await waitFor(() => updates.length === 1, 'the first read');
  t.same(updates[0], { text: HOST_GW });

  await new Promise((r) => setTimeout(r, 300));
  t.equal(updates.length, 1, 'nothing new before the swap');
  await kubeletWrite(dir, 2, VXLAN);
  const seen = await waitFor(() => updates.length === 2, 'the swap to vxlan');
  t.comment(`symlink swap seen after ${seen} ms`);
  t.same(updates[1], { text: VXLAN });

  await kubeletWrite(dir, 3, VXLAN); // a resync that writes the same content
  await new Promise((r) => setTimeout(r, 300));
  t.equal(updates.length, 2, 'an identical rewrite is not an update');

  await rm(join(dir, '..data'));
  await waitFor(() => updates.length === 3, 'the file going away');
  t.match(updates[2], { unreadable: /does not exist/ });
  await kubeletWrite(dir, 4, HOST_GW);
  await waitFor(() => updates.length === 4, 'the file coming back');
  t.same(updates[3], { text: HOST_GW });

  stop.abort();
  await watching;
});

t.test('the poll is a backstop when the directory cannot be watched', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wag-cm-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'missing-dir', 'net-conf.json');
  const updates: NetConfUpdate[] = [];
  const stop = new AbortController();
  const source = new FileNetConfSource({ path: file, logger: pino({ level: 'silent' }), pollMs: 100 });
  const watching = source.watch((u) => updates.push(u), stop.signal);
  await waitFor(() => updates.length === 1, 'the first read');
  t.match(updates[0], { unreadable: /does not exist/ });
  await mkdir(join(dir, 'missing-dir'));
  await writeFile(file, VXLAN);
  await waitFor(() => updates.length === 2, 'the file appearing');
  t.same(updates[1], { text: VXLAN });
  stop.abort();
  await watching;
});
