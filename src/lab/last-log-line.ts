// The last thing a process's log says, so that a lab process (etcd, an agent)
// that failed or never became ready ends in one line rather than "see the log".
import { readFileSync } from 'node:fs';

/** pino's `msg` (and `err`) from the log's last line, or the raw line. */
export function lastLogLine(file: string): string {
  let line: string;
  try {
    line = readFileSync(file, 'utf8').trim().split('\n').pop() ?? '';
  } catch {
    return '(no log)';
  }
  try {
    const rec = JSON.parse(line) as { msg?: string; err?: { message?: string } };
    line = [rec.msg, rec.err?.message].filter(Boolean).join(': ') || line;
  } catch {
    // not JSON: a fatal error printed as text
  }
  return line.slice(0, 300) || '(empty log)';
}
