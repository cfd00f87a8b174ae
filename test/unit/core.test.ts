// The one-of-each helpers in src/core: backoff and sleep, atomic writes; and
// the one subnet.env module.
import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backoff, sleep } from '../../src/core/backoff.js';
import { SerialQueue } from '../../src/core/serial-queue.js';
import { SaidOnce } from '../../src/core/said-once.js';
import { nodeAtomicFs, writeFileAtomic, writeFileAtomicSync, type AtomicFs } from '../../src/core/atomic-write.js';
import { formatSubnetEnv, parseSubnetEnv, readPreviousSubnetEnv, SubnetEnvError } from '../../src/subnet/subnet-env.js';
import { Cidr } from '../../src/core/cidr.js';
import { TransientError, WeftError, isRetryable } from '../../src/errors.js';
import { EtcdUnreachableError } from '../../src/subnet/etcd/client.js';
import { KubeApiError } from '../../src/subnet/kube/api.js';

t.test('sleep: true after the time, false at once when aborted', async (t) => {
  t.equal(await sleep(1), true);
  const ac = new AbortController();
  const pending = sleep(60_000, ac.signal);
  ac.abort();
  t.equal(await pending, false, 'an abort ends a long sleep with false');
  t.equal(await sleep(60_000, ac.signal), false, 'an aborted signal never sleeps');
});

t.test('Backoff: doubles to the maximum, reports once per step, resets', async (t) => {
  const b = new Backoff({ minMs: 100, maxMs: 500 });
  t.same([b.step(), b.step(), b.step(), b.step(), b.step()], [100, 200, 400, 500, 500]);
  b.reset();
  t.equal(b.step(), 100, 'reset starts again at the minimum');

  const reports: string[] = [];
  const logged = new Backoff({ minMs: 1, maxMs: 2, onStep: (err, ms) => reports.push(`${(err as Error).message}@${ms}`), onRecovered: () => reports.push('recovered') });
  for (let i = 0; i < 4; i++) await logged.wait(new Error('down'));
  logged.reset();
  logged.reset();
  t.same(reports, ['down@1', 'down@2', 'recovered'], 'one report per step, one recovery');

  const reasons: string[] = [];
  const fresh = new Backoff({ minMs: 1, maxMs: 1, reportNewReasons: true, onStep: (err) => reasons.push((err as Error).message) });
  for (const why of ['refused', 'refused', 'no config', 'no config']) await fresh.wait(new Error(why));
  t.same(reasons, ['refused', 'no config'], 'with reportNewReasons, a new reason is reported within a step');
});

t.test('atomic writes replace whole files and leave no temp file behind', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-core-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await writeFileAtomic(join(dir, 'a/b/state.json'), '{"v":1}', { mode: 0o600 });
  writeFileAtomicSync(join(dir, 'sync.json'), 'x');
  t.same([readFileSync(join(dir, 'a/b/state.json'), 'utf8'), readFileSync(join(dir, 'sync.json'), 'utf8')], ['{"v":1}', 'x'], 'written, directories created');
  writeFileSync(join(dir, 'dir-in-the-way'), '');
  await t.rejects(writeFileAtomic(join(dir, 'dir-in-the-way/x'), 'y'), 'a write that cannot happen rejects');
  t.same(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temp file is left');
});

t.test('atomic writes flush the file before the rename and the directory after', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-core-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const calls: string[] = [];
  const names = new Map<number, string>();
  const io: AtomicFs = {
    ...nodeAtomicFs,
    open: (path, flags, mode) => {
      const fd = nodeAtomicFs.open(path, flags, mode);
      names.set(fd, path.endsWith('.tmp') ? 'tmp' : 'dir');
      calls.push(`open ${names.get(fd)}`);
      return fd;
    },
    write: (fd, data) => (calls.push(`write ${names.get(fd)}`), nodeAtomicFs.write(fd, data)),
    fsync: (fd) => (calls.push(`fsync ${names.get(fd)}`), nodeAtomicFs.fsync(fd)),
    close: (fd) => (calls.push(`close ${names.get(fd)}`), nodeAtomicFs.close(fd)),
    rename: (from, to) => (calls.push('rename'), nodeAtomicFs.rename(from, to)),
  };
  writeFileAtomicSync(join(dir, 'state.json'), 'x', {}, io);
  t.same(calls, ['open tmp', 'write tmp', 'fsync tmp', 'close tmp', 'rename', 'open dir', 'fsync dir', 'close dir']);
});

t.test('subnet.env: one format, a strict parser naming the key, a lenient read of leftovers', async (t) => {
  const env = { network: Cidr.parse('10.244.0.0/16'), subnet: Cidr.parse('10.244.3.0/24'), mtu: 1450, ipMasq: true };
  const text = formatSubnetEnv(env);
  t.equal(text, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n', "flannel's keys, gateway first");
  const parsed = parseSubnetEnv(text);
  t.same([String(parsed.subnet), String(parsed.gateway), parsed.mtu, parsed.ipMasq], ['10.244.3.0/24', '10.244.3.1', 1450, true], 'parses back');
  t.throws(() => parseSubnetEnv(text.replace('FLANNEL_MTU=1450', 'FLANNEL_MTU=big')), new SubnetEnvError('FLANNEL_MTU', '"big" is not an MTU between 576 and 65535'));

  const dir = mkdtempSync(join(tmpdir(), 'weft-env-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'subnet.env');
  writeFileSync(file, 'FLANNEL_SUBNET=10.244.9.1/24\nFLANNEL_NETWORK=garbage\n');
  const left = await readPreviousSubnetEnv(file);
  t.same([String(left.subnet), left.network, left.mtu], ['10.244.9.0/24', undefined, undefined], 'a damaged file still yields the keys that parse');
  t.same(await readPreviousSubnetEnv(join(dir, 'missing')), {}, 'a missing file yields nothing');
  writeFileSync(file, 'FLANNEL_SUBNET=10.244.9.1/24\nFLANNEL_IPV6_SUBNET=2001:db8:1000:9::1/64\n');
  t.equal(String((await readPreviousSubnetEnv(file)).ipv6Subnet), '2001:db8:1000:9::/64', "a dual-stack node's IPv6 subnet, for its lease to keep");
});

t.test('SerialQueue: jobs run one at a time, in order, past a failure', async (t) => {
  const q = new SerialQueue();
  const log: string[] = [];
  const job = (name: string, ms: number, fail = false) => q.run(async () => {
    log.push(`start ${name}`);
    await sleep(ms);
    log.push(`end ${name}`);
    if (fail) throw new Error(name);
    return name;
  });
  const results = await Promise.allSettled([job('a', 20), job('b', 1, true), job('c', 1)]);
  t.same(log, ['start a', 'end a', 'start b', 'end b', 'start c', 'end c'], 'no overlap, queue order');
  t.same(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled'], "a failed job rejects its own caller only");
});

t.test('SaidOnce: news once per key and text, again after a change or forget, bounded', async (t) => {
  const said = new SaidOnce(3);
  t.same([said.news('a', 'x'), said.news('a', 'x'), said.news('a', 'y'), said.news('a', 'y')], [true, false, true, false], 'a repeat is not news, a change is');
  said.forget('a');
  t.equal(said.news('a', 'y'), true, 'after forget the same text is news again');
  said.news('b', 'x');
  said.retain(new Set(['b']));
  t.equal(said.news('a', 'y'), true, 'retain forgot what is gone');
  said.news('c', 'x');
  said.news('d', 'x');
  t.equal(said.news('b', 'x'), true, 'past the limit the memory starts afresh instead of growing');
});

t.test('retry decisions come from error types, not message text', async (t) => {
  const retried = (errs: unknown[]) => errs.map(isRetryable);
  t.same(retried([
    new WeftError('BIRD is not installed', 'apt-get install bird2'),
    new TransientError('list nodes: no answer from the API server in 30 s'),
    new EtcdUnreachableError('etcd at http://192.0.2.1:2379 is unreachable'),
    new KubeApiError(503, 'list nodes: HTTP 503'),
    new KubeApiError(429, 'list nodes: HTTP 429'),
  ]), [true, true, true, true, true], 'user-fixable, transient, unreachable etcd, API server trouble and throttling: retried');
  t.same(retried([
    new KubeApiError(404, 'get node n1: HTTP 404'),
    new TypeError('cannot read properties of undefined (connect)'),
    new Error('ECONNREFUSED, but raw'),
    'ETIMEDOUT',
  ]), [false, false, false, false], 'a client error, a programming error and untyped failures: not retried, whatever their text');
});
