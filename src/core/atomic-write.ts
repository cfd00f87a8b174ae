// A file replaced whole or not at all: written beside its final name, flushed
// to disk, renamed over it, and the directory flushed, so a reader (the CNI
// plugin, a restarted agent, `weft lab down` after a crash) never sees half a
// file, and a power cut at any instant leaves the old content or the new.
// Without the first fsync a crash can leave the new name on an empty file;
// without the second the rename itself can be lost.
//
// The steps are written once (a generator of file-system calls) and run by a
// synchronous driver (the short-lived CNI plugin) or an asynchronous one (the
// agent); a test can hand either its own `AtomicFs` to stop after any call.
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { dirname } from 'node:path';

export interface AtomicWriteOptions {
  mode?: number;
  /** Mode of the directory when it has to be created. */
  dirMode?: number;
}

/** One file-system call of an atomic write, as the drivers run it. */
export type AtomicStep =
  | { op: 'mkdir'; path: string; mode?: number }
  | { op: 'open'; path: string; flags: 'w' | 'r'; mode?: number }
  | { op: 'write'; fd: number; data: string | Uint8Array }
  | { op: 'fsync'; fd: number }
  | { op: 'close'; fd: number }
  | { op: 'rename'; from: string; to: string }
  | { op: 'rm'; path: string };

/** The calls a synchronous write makes; `open` returns a descriptor. */
export interface AtomicFs {
  mkdir(path: string, mode?: number): void;
  open(path: string, flags: 'w' | 'r', mode?: number): number;
  write(fd: number, data: string | Uint8Array): void;
  fsync(fd: number): void;
  close(fd: number): void;
  rename(from: string, to: string): void;
  rm(path: string): void;
}

export const nodeAtomicFs: AtomicFs = {
  mkdir: (path, mode) => void fs.mkdirSync(path, { recursive: true, ...(mode !== undefined ? { mode } : {}) }),
  open: (path, flags, mode) => fs.openSync(path, flags, mode),
  write: (fd, data) => fs.writeFileSync(fd, data),
  fsync: (fd) => fs.fsyncSync(fd),
  close: (fd) => fs.closeSync(fd),
  rename: (from, to) => fs.renameSync(from, to),
  rm: (path) => fs.rmSync(path, { force: true }),
};

const async = {
  mkdir: promisify(fs.mkdir),
  open: promisify(fs.open),
  writeFile: promisify(fs.writeFile),
  fsync: promisify(fs.fsync),
  close: promisify(fs.close),
  rename: promisify(fs.rename),
  rm: promisify(fs.rm),
};

function tmpName(path: string): string {
  return `${path}.${process.pid}.${Math.random().toString(36).slice(2, 8)}.tmp`;
}

/** The steps of one atomic write; each yield is one call, answered with its result (a descriptor for `open`). */
function* atomicWriteSteps(path: string, data: string | Uint8Array, opts: AtomicWriteOptions): Generator<AtomicStep, void, number | undefined> {
  const dir = dirname(path);
  yield { op: 'mkdir', path: dir, ...(opts.dirMode !== undefined ? { mode: opts.dirMode } : {}) };
  const tmp = tmpName(path);
  let fd: number | undefined;
  try {
    fd = yield { op: 'open', path: tmp, flags: 'w', ...(opts.mode !== undefined ? { mode: opts.mode } : {}) };
    yield { op: 'write', fd: fd!, data };
    yield { op: 'fsync', fd: fd! };
    const closing = fd!;
    fd = undefined;
    yield { op: 'close', fd: closing };
    yield { op: 'rename', from: tmp, to: path };
  } catch (err) {
    // Best effort: the first failure is the one worth reporting.
    try {
      if (fd !== undefined) yield { op: 'close', fd };
      yield { op: 'rm', path: tmp };
    } catch {
      // the temp file is left; its name says what it is
    }
    throw err;
  }
  // The rename is durable only once the directory entry is on disk.
  const dirFd = (yield { op: 'open', path: dir, flags: 'r' })!;
  try {
    yield { op: 'fsync', fd: dirFd };
  } finally {
    yield { op: 'close', fd: dirFd };
  }
}

function runSync(steps: Generator<AtomicStep, void, number | undefined>, io: AtomicFs): void {
  let next = steps.next();
  while (!next.done) {
    let result: number | undefined;
    try {
      result = callSync(next.value, io);
    } catch (err) {
      next = steps.throw(err);
      continue;
    }
    next = steps.next(result);
  }
}

function callSync(s: AtomicStep, io: AtomicFs): number | undefined {
  switch (s.op) {
    case 'mkdir': io.mkdir(s.path, s.mode); break;
    case 'open': return io.open(s.path, s.flags, s.mode);
    case 'write': io.write(s.fd, s.data); break;
    case 'fsync': io.fsync(s.fd); break;
    case 'close': io.close(s.fd); break;
    case 'rename': io.rename(s.from, s.to); break;
    case 'rm': io.rm(s.path); break;
  }
  return undefined;
}

async function callAsync(s: AtomicStep): Promise<number | undefined> {
  switch (s.op) {
    case 'mkdir': await async.mkdir(s.path, { recursive: true, ...(s.mode !== undefined ? { mode: s.mode } : {}) }); break;
    case 'open': return async.open(s.path, s.flags, s.mode);
    case 'write': await async.writeFile(s.fd, s.data); break;
    case 'fsync': await async.fsync(s.fd); break;
    case 'close': await async.close(s.fd); break;
    case 'rename': await async.rename(s.from, s.to); break;
    case 'rm': await async.rm(s.path, { force: true }); break;
  }
  return undefined;
}

export async function writeFileAtomic(path: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): Promise<void> {
  const steps = atomicWriteSteps(path, data, opts);
  let next = steps.next();
  while (!next.done) {
    let result: number | undefined;
    try {
      result = await callAsync(next.value);
    } catch (err) {
      next = steps.throw(err);
      continue;
    }
    next = steps.next(result);
  }
}

/** The same, for the short-lived CNI plugin, which works synchronously; `io` is for tests that stop it midway. */
export function writeFileAtomicSync(path: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}, io: AtomicFs = nodeAtomicFs): void {
  runSync(atomicWriteSteps(path, data, opts), io);
}
