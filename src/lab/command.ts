// The lab's batched `ip` and bounded parallelism; running a program is
// src/core/command.ts, re-exported here for the lab's callers.
import { runCommand } from '../core/command.js';

export { inNetns, runCommand, type CommandOptions, type CommandResult } from '../core/command.js';

/** Runs `ip -batch -` (inside `netns` if given): many changes, one process. */
export async function ipBatch(netns: string | undefined, lines: readonly string[]): Promise<void> {
  if (lines.length === 0) return;
  const argv = netns ? ['ip', '-n', netns, '-batch', '-'] : ['ip', '-batch', '-'];
  await runCommand(argv, { input: lines.join('\n') + '\n' });
}

/** Runs `fn` over `items` with at most `limit` in flight; results keep the input order. */
export async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
