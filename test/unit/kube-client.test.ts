// The Kubernetes client's request mechanics against a loopback HTTP server that answers as an
// overloaded or silent API server would: a per-request timeout (watches excepted), 429 with
// Retry-After retried after the time it names, and a client-side token bucket (QPS/burst).
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { KubeApiError, KubeClient } from '../../src/adapters/kube/client.ts';

let server: http.Server;
let port: number;
const hits: { path: string; at: number }[] = [];
const bodies: { method: string; path: string; body: string }[] = [];
let rateLimited = 0;

before(async () => {
  server = http.createServer((req, res) => {
    hits.push({ path: req.url ?? '', at: performance.now() });
    if (req.url?.startsWith('/echo')) {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        bodies.push({ method: req.method ?? '', path: req.url ?? '', body });
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('{}');
      });
      return;
    }
    if (req.url?.startsWith('/hang')) return; // never answers (the watch variant neither)
    if (req.url === '/busy' && rateLimited-- > 0) {
      res.writeHead(429, { 'Retry-After': '1', 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', reason: 'TooManyRequests', message: 'slow down' }));
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"ok":true}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const kubeconfig = () => `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:${port}", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`;

describe('KubeClient request mechanics', () => {
  it('a DELETE with a body is framed: the server reads the body, and the next request on the kept-alive connection is intact', async () => {
    const c = await KubeClient.fromString(kubeconfig(), undefined, { timeoutMs: 2000 });
    bodies.length = 0;
    await c.request('DELETE', '/echo/a', { propagationPolicy: 'Background' });
    await c.get('/echo/b');
    assert.deepEqual(bodies, [
      { method: 'DELETE', path: '/echo/a', body: '{"propagationPolicy":"Background"}' },
      { method: 'GET', path: '/echo/b', body: '' },
    ]);
  });

  it('a request the server never answers fails after the timeout, naming the server; a watch (raw) has none', async () => {
    const c = await KubeClient.fromString(kubeconfig(), undefined, { timeoutMs: 300 });
    const t0 = Date.now();
    await assert.rejects(c.get('/hang'), (err: unknown) => err instanceof KubeApiError && /127\.0\.0\.1:\d+ did not answer within 0\.3s/.test(err.message));
    assert.ok(Date.now() - t0 < 2000);
    const ac = new AbortController();
    const res = await Promise.race([c.raw('GET', '/hang-watch', undefined, undefined, ac.signal).then(() => 'answered'), new Promise((r) => setTimeout(() => r('still open'), 600))]);
    assert.equal(res, 'still open');
    ac.abort();
  });

  it('429 with Retry-After is retried after the time it names, then succeeds', async () => {
    const c = await KubeClient.fromString(kubeconfig());
    rateLimited = 2;
    const t0 = Date.now();
    assert.deepEqual(await c.get('/busy'), { ok: true });
    const took = Date.now() - t0;
    assert.ok(took >= 1900 && took < 5000, `took ${took} ms`);
    rateLimited = 100;
    const limited = await KubeClient.fromString(kubeconfig(), undefined, { maxRetries: 0 });
    await assert.rejects(limited.get('/busy'), (err: unknown) => err instanceof KubeApiError && err.status === 429);
    rateLimited = 0;
  });

  it('client-side QPS/burst: the burst goes at once, the rest at the QPS', async () => {
    const c = await KubeClient.fromString(kubeconfig(), undefined, { qps: 10, burst: 3 });
    hits.length = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 8 }, () => c.get('/ok')));
    const times = hits.map((h) => h.at - t0).sort((a, b) => a - b);
    const shown = times.map(Math.round).join(', ');
    assert.ok(times[2]! - times[0]! < 150, `the burst waited: ${shown}`);
    // 5 more tokens at 10 per second: the last one about 500 ms after the first.
    assert.ok(times[7]! - times[0]! >= 420 && times[7]! - times[0]! < 1500, `paced wrongly: ${shown}`);
    const free = await KubeClient.fromString(kubeconfig(), undefined, { qps: 0 });
    hits.length = 0;
    const t1 = performance.now();
    await Promise.all(Array.from({ length: 20 }, () => free.get('/ok')));
    assert.ok(Math.max(...hits.map((h) => h.at - t1)) < 400, 'qps 0 turns the limit off');
  });

  it('time spent waiting for the client\'s own rate limiter does not count against the server\'s timeout', async () => {
    const c = await KubeClient.fromString(kubeconfig(), undefined, { qps: 4, burst: 1, timeoutMs: 600 });
    // Six requests at 4/s take ~1.25 s in the queue: each still gets its full 0.6 s with the server.
    const results = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => c.get(`/queued-${i}`)));
    assert.deepEqual(results.map((r) => r.status), Array(6).fill('fulfilled'));
    assert.deepEqual(await c.get('/after'), { ok: true });
  });
});

