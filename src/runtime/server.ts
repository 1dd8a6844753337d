// Health probes and Prometheus metrics over plain HTTP, shaped like controller-runtime's:
// /healthz and /readyz answer "ok" when every named check passes and 500 with a per-check list
// otherwise (failure reasons are logged and shown only on /healthz/<check>, since the combined
// endpoint is usually unauthenticated); ?verbose lists every check, ?exclude=<name> skips one.
// Probes and metrics may share one listener or use two (call twice with different `serve`).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { silentLogger, type Logger } from '../util/log.ts';

/** true = healthy; false or a string (the reason) = failing; a throw or a timeout = failing. */
export type ProbeCheck = () => boolean | string | Promise<boolean | string>;
export type ProbeEndpoint = 'healthz' | 'readyz' | 'metrics';

export interface ProbeServerOptions {
  /** "host:port"; ":8081" listens on every interface, port 0 picks a free one. */
  address: string;
  checks?: { healthz?: Record<string, ProbeCheck>; readyz?: Record<string, ProbeCheck> };
  registry?: Registry;
  /** Default: healthz and readyz, plus metrics when a registry is given. */
  serve?: ProbeEndpoint[];
  /** A check that takes longer fails (a hung check must not hang the kubelet's probe). Default 5 s. */
  checkTimeoutMs?: number;
  log?: Logger;
}

export interface ProbeServer {
  /** The bound port (useful with port 0). */
  port: number;
  close(): Promise<void>;
}

interface Result {
  name: string;
  ok: boolean;
  reason?: string;
  excluded?: boolean;
}

const TEXT = { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' };

export function parseAddress(address: string): { host: string | undefined; port: number } {
  const i = address.lastIndexOf(':');
  if (i < 0) throw new Error(`invalid listen address "${address}": want host:port or :port`);
  const hostPart = address.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  const port = Number(address.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535 || address.slice(i + 1) === '') {
    throw new Error(`invalid port in listen address "${address}"`);
  }
  return { host: hostPart === '' ? undefined : hostPart, port };
}

export async function startProbeServer(opts: ProbeServerOptions): Promise<ProbeServer> {
  const log = opts.log ?? silentLogger;
  const serve = new Set<ProbeEndpoint>(opts.serve ?? (opts.registry ? ['healthz', 'readyz', 'metrics'] : ['healthz', 'readyz']));
  if (serve.has('metrics') && !opts.registry) throw new Error('startProbeServer: serving metrics needs a registry');
  const timeoutMs = opts.checkTimeoutMs ?? 5_000;
  const checks: Record<'healthz' | 'readyz', Record<string, ProbeCheck>> = {
    healthz: opts.checks?.healthz ?? {},
    readyz: opts.checks?.readyz ?? {},
  };
  for (const kind of ['healthz', 'readyz'] as const) {
    for (const name of Object.keys(checks[kind])) {
      if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error(`invalid ${kind} check name "${name}"`);
    }
  }

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://probe');
    const [, first = '', sub, ...rest] = url.pathname.split('/');
    const endpoint = first as ProbeEndpoint;
    if (!serve.has(endpoint) || rest.length > 0 || (endpoint === 'metrics' && sub !== undefined)) {
      return send(res, req, 404, TEXT, '404 page not found\n');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return send(res, req, 405, { ...TEXT, Allow: 'GET, HEAD' }, 'method not allowed\n');
    }
    if (endpoint === 'metrics') {
      const registry = opts.registry as Registry;
      try {
        const body = await registry.metrics();
        return send(res, req, 200, { 'Content-Type': registry.contentType }, body);
      } catch (err) {
        log.error({ err }, 'collecting metrics failed');
        return send(res, req, 500, TEXT, 'collecting metrics failed\n');
      }
    }

    const set = checks[endpoint];
    if (sub !== undefined && sub !== '') {
      const check = set[sub];
      if (!check) return send(res, req, 404, TEXT, '404 page not found\n');
      const r = await runCheck(sub, check, timeoutMs);
      return r.ok ? send(res, req, 200, TEXT, 'ok') : send(res, req, 500, TEXT, `internal server error: ${r.reason}\n`);
    }

    const excluded = new Set(url.searchParams.getAll('exclude'));
    const names = Object.keys(set);
    const results: Result[] = names.length === 0
      ? [{ name: 'ping', ok: true }]
      : await Promise.all(
          names.map((name) =>
            excluded.has(name) ? Promise.resolve<Result>({ name, ok: true, excluded: true }) : runCheck(name, set[name] as ProbeCheck, timeoutMs),
          ),
        );
    let out = '';
    for (const r of results) {
      if (r.excluded) out += `[+]${r.name} excluded: ok\n`;
      else if (r.ok) out += `[+]${r.name} ok\n`;
      else out += `[-]${r.name} failed: reason withheld\n`;
    }
    const unknown = [...excluded].filter((n) => !names.includes(n));
    if (unknown.length > 0) out += `warn: some health checks cannot be excluded: no matches for ${unknown.map((n) => JSON.stringify(n)).join(',')}\n`;
    const failed = results.filter((r) => !r.ok);
    if (failed.length > 0) {
      log.info({ endpoint, failed: Object.fromEntries(failed.map((r) => [r.name, r.reason])) }, `${endpoint} check failed`);
      return send(res, req, 500, TEXT, `${out}${endpoint} check failed\n`);
    }
    if (!url.searchParams.has('verbose')) return send(res, req, 200, TEXT, 'ok');
    return send(res, req, 200, TEXT, `${out}${endpoint} check passed\n`);
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err }, 'probe handler failed');
      if (!res.headersSent) send(res, req, 500, TEXT, 'internal server error\n');
      else res.destroy();
    });
  });
  const { host, port } = parseAddress(opts.address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ err }, 'probe server error'));
  const bound = (server.address() as AddressInfo).port;
  log.info({ address: `${host ?? ''}:${bound}`, serve: [...serve] }, 'probe server listening');

  let closed: Promise<void> | undefined;
  return {
    port: bound,
    close: () =>
      (closed ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Scrapers keep connections alive; do not wait for them to go away.
        server.closeAllConnections();
      })),
  };
}

async function runCheck(name: string, check: ProbeCheck, timeoutMs: number): Promise<Result> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`timed out after ${timeoutMs}ms`), timeoutMs);
    });
    const v = await Promise.race([Promise.resolve().then(check), timeout]);
    if (v === true) return { name, ok: true };
    return { name, ok: false, reason: typeof v === 'string' && v !== '' ? v : 'check returned false' };
  } catch (err) {
    return { name, ok: false, reason: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}

function send(res: http.ServerResponse, req: http.IncomingMessage, status: number, headers: Record<string, string>, body: string): void {
  const buf = Buffer.from(body, 'utf8');
  res.writeHead(status, { ...headers, 'Content-Length': String(buf.length) });
  res.end(req.method === 'HEAD' ? undefined : buf);
}
