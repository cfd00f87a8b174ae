// The real `bird -p` (Debian bird2) on a config text: a config BIRD would
// reject fails the test that made it.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function birdParse(text: string): Promise<{ ok: boolean; message: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'wbg-unit-'));
  try {
    const file = join(dir, 'bird.conf');
    await writeFile(file, text);
    return await new Promise((resolve) => {
      execFile('bird', ['-p', '-c', file], { timeout: 20_000 }, (err, stdout, stderr) => resolve({ ok: !err, message: `${stdout}${stderr}`.trim() }));
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
