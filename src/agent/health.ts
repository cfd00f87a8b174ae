// /healthz (the process is alive and its loops turn), /readyz (every part of
// the node's desired state is applied; the body names each part that is not)
// and /metrics (Prometheus text).
import { createServer, type Server } from 'node:http';
import { WeftError } from '../errors.js';
import { renderMetrics, type MetricFamily } from './metrics.js';

/** A part of the node's desired state that is not applied, and why. */
export interface FailingPart {
  part: string;
  reason: string;
}

export interface HealthSource {
  /** Empty when ready, else each part that is not. */
  notReady(): FailingPart[];
  /** Undefined when healthy, else why not. */
  unhealthyReason(): string | undefined;
  metrics(): MetricFamily[];
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
      const failing = source.notReady();
      return send(failing.length ? 503 : 200, JSON.stringify({ ready: failing.length === 0, failing }) + '\n', 'application/json');
    }
    if (path === '/metrics') {
      try {
        return send(200, renderMetrics(source.metrics()), 'text/plain; version=0.0.4; charset=utf-8');
      } catch (err) {
        return send(500, `cannot render metrics: ${(err as Error).message}\n`);
      }
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
