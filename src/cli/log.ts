import { pino, type Logger } from 'pino';

/** JSON logs to stderr (stdout stays free for command output). */
export function createLogger(opts: { level?: string; name?: string } = {}): Logger {
  return pino(
    { level: opts.level ?? process.env.WEFT_LOG_LEVEL ?? 'info', name: opts.name ?? 'weft', base: { pid: process.pid } },
    pino.destination({ fd: 2, sync: true }),
  );
}
