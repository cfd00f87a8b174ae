// /healthz (the process is alive and its loops turn), /readyz (data plane
// programmed and subnet.env written) and /metrics (Prometheus text).
import { createServer, type Server } from 'node:http';
import { WeftError } from '../errors.js';

export interface HealthSource {
  /** Undefined when ready, else why not. */
  notReadyReason(): string | undefined;
  /** Undefined when healthy, else why not. */
  unhealthyReason(): string | undefined;
  metrics(): Record<string, number>;
}

export function parseListenAddr(addr: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]*):(\d{1,5})$/.exec(addr);
  const port = Number(m?.[2]);
  if (!m || port > 65535) throw new WeftError(`bad --healthz-addr "${addr}"`, 'use HOST:PORT, e.g. 0.0.0.0:10270');
  return { host: (m[1] || '0.0.0.0').replace(/^\[|\]$/g, ''), port };
}

export async function serveHealth(addr: string, source: HealthSource): Promise<Server> {
  const { host, port } = parseListenAddr(addr);
  const server = createServer((req, res) => {
    const send = (code: number, body: string, type = 'text/plain'): void => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      const why = source.unhealthyReason();
      return send(why ? 503 : 200, why ? `unhealthy: ${why}\n` : 'ok\n');
    }
    if (path === '/readyz') {
      const why = source.notReadyReason();
      return send(why ? 503 : 200, why ? `not ready: ${why}\n` : 'ok\n');
    }
    if (path === '/metrics') {
      const lines = Object.entries(source.metrics()).map(([k, v]) => `weft_${k} ${v}`);
      return send(200, lines.join('\n') + '\n', 'text/plain; version=0.0.4');
    }
    send(404, 'not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new WeftError(`cannot listen on --healthz-addr ${addr} (${err.code ?? err.message})`, 'pick a free address or port')),
    );
    server.listen(port, host, () => resolve());
  });
  return server;
}
