import { pino, type DestinationStream, type Logger } from 'pino';
import { WeftError } from '../errors.js';

export type LogFormat = 'json' | 'text';

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** pino's own fields, shown in the line's head (or not at all) instead of as key=value. */
const HEAD_FIELDS = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'name']);

/** `--log-format`: JSON for collectors; plain lines for a person at a terminal (the default on a TTY). */
export function parseLogFormat(value: string | undefined, isTTY = Boolean(process.stdout.isTTY)): LogFormat {
  if (value === undefined || value === '') return isTTY ? 'text' : 'json';
  if (value === 'json' || value === 'text') return value;
  throw new WeftError(`--log-format "${value}" is not a log format`, 'use --log-format text or --log-format json');
}

/** One pino JSON record as a plain line: `15:04:05.123 WARN message key=value ...`. */
export function formatLogLine(json: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.trimEnd();
  }
  const time = typeof rec.time === 'number' ? new Date(rec.time).toISOString().slice(11, 23) : '';
  const level = LEVELS[rec.level as number] ?? String(rec.level ?? '');
  const fields = Object.entries(rec)
    .filter(([k]) => !HEAD_FIELDS.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/[\s"=]/.test(v) && v !== '' ? v : JSON.stringify(v)}`);
  return [time, level.padEnd(5), String(rec.msg ?? ''), ...fields].filter((p) => p !== '').join(' ');
}

/** A sync stream to stderr that writes each record as a plain line. */
function textDestination(): DestinationStream {
  const out = pino.destination({ fd: 2, sync: true });
  return { write: (chunk: string) => void out.write(formatLogLine(chunk) + '\n') };
}

/** Logs to stderr (stdout stays free for command output), as JSON or as plain lines. */
export function createLogger(opts: { level?: string; name?: string; format?: LogFormat } = {}): Logger {
  const format = opts.format ?? parseLogFormat(process.env.WEFT_LOG_FORMAT);
  return pino(
    { level: opts.level ?? process.env.WEFT_LOG_LEVEL ?? 'info', name: opts.name ?? 'weft', base: { pid: process.pid } },
    format === 'text' ? textDestination() : pino.destination({ fd: 2, sync: true }),
  );
}
