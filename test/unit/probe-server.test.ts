// The probe/metrics server on a loopback port: status codes and bodies of /healthz and /readyz
// (including ?verbose, ?exclude, per-check paths, throwing and hanging checks), /metrics content
// type and contents, and two servers splitting the endpoints between them.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Counter, Registry } from 'prom-client';
import { parseAddress, startProbeServer, type ProbeServer } from '../../src/runtime/server.ts';

function get(port: number, path: string, method = 'GET'): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: String(res.headers['content-type'] ?? '') }));
    });
    req.on('error', reject);
    req.end();
  });
}

void describe('probe server', () => {
  let srv: ProbeServer;
  let ready: boolean | string = false;
  const registry = new Registry();
  const counter = new Counter({ name: 'drs_test_total', help: 'test counter', labelNames: ['kind'], registers: [registry] });
  counter.inc({ kind: 'x' }, 3);

  before(async () => {
    srv = await startProbeServer({
      address: '127.0.0.1:0',
      registry,
      checkTimeoutMs: 300,
      checks: {
        healthz: { ping: () => true },
        readyz: {
          cache: () => ready,
          leader: async () => {
            await new Promise((r) => setTimeout(r, 5));
            return true;
          },
        },
      },
    });
  });
  after(() => srv.close());

  void test('healthz passes with "ok"; verbose lists the checks', async () => {
    assert.ok(srv.port > 0);
    assert.deepEqual(await get(srv.port, '/healthz'), { status: 200, body: 'ok', type: 'text/plain; charset=utf-8' });
    const v = await get(srv.port, '/healthz?verbose');
    assert.equal(v.status, 200);
    assert.equal(v.body, '[+]ping ok\nhealthz check passed\n');
  });

  void test('readyz fails with 500 naming the failed check, reason withheld; passes once ready', async () => {
    ready = 'informer cache not synced';
    const r = await get(srv.port, '/readyz');
    assert.equal(r.status, 500);
    assert.match(r.body, /^\[-\]cache failed: reason withheld$/m);
    assert.match(r.body, /^\[\+\]leader ok$/m);
    assert.match(r.body, /readyz check failed\n$/);
    assert.doesNotMatch(r.body, /informer/);
    // The per-check path shows the reason.
    const one = await get(srv.port, '/readyz/cache');
    assert.equal(one.status, 500);
    assert.match(one.body, /informer cache not synced/);
    assert.equal((await get(srv.port, '/readyz/leader')).body, 'ok');
    // Excluding the failing check passes.
    const ex = await get(srv.port, '/readyz?exclude=cache&verbose');
    assert.equal(ex.status, 200);
    assert.match(ex.body, /^\[\+\]cache excluded: ok$/m);

    ready = false;
    assert.equal((await get(srv.port, '/readyz')).status, 500);
    ready = true;
    assert.deepEqual(await get(srv.port, '/readyz'), { status: 200, body: 'ok', type: 'text/plain; charset=utf-8' });
  });

  void test('metrics: prom-client content type and the registered metric', async () => {
    const m = await get(srv.port, '/metrics');
    assert.equal(m.status, 200);
    assert.equal(m.type, registry.contentType);
    assert.match(m.type, /^text\/plain; version=0\.0\.4/);
    assert.match(m.body, /^# TYPE drs_test_total counter$/m);
    assert.match(m.body, /^drs_test_total\{kind="x"\} 3$/m);
  });

  void test('unknown paths 404, other methods 405, HEAD has no body', async () => {
    assert.equal((await get(srv.port, '/nope')).status, 404);
    assert.equal((await get(srv.port, '/readyz/unknown')).status, 404);
    assert.equal((await get(srv.port, '/healthz', 'POST')).status, 405);
    const h = await get(srv.port, '/healthz', 'HEAD');
    assert.equal(h.status, 200);
    assert.equal(h.body, '');
  });
});

void test('throwing and hanging checks fail instead of breaking the server', async () => {
  const srv = await startProbeServer({
    address: '127.0.0.1:0',
    checkTimeoutMs: 200,
    checks: {
      healthz: {
        boom: () => {
          throw new Error('kaput');
        },
        hang: () => new Promise<boolean>(() => {}),
        fine: () => true,
      },
    },
  });
  try {
    const t0 = Date.now();
    const r = await get(srv.port, '/healthz');
    assert.ok(Date.now() - t0 < 2000, 'a hung check times out');
    assert.equal(r.status, 500);
    assert.match(r.body, /^\[-\]boom failed: reason withheld$/m);
    assert.match(r.body, /^\[-\]hang failed: reason withheld$/m);
    assert.match(r.body, /^\[\+\]fine ok$/m);
    assert.match((await get(srv.port, '/healthz/hang')).body, /timed out after 200ms/);
    // No checks at all: an implicit ping, like controller-runtime.
    assert.equal((await get(srv.port, '/readyz?verbose')).body, '[+]ping ok\nreadyz check passed\n');
  } finally {
    await srv.close();
  }
});

void test('probes and metrics on two listeners', async () => {
  const registry = new Registry();
  new Counter({ name: 'drs_split_total', help: 'split', registers: [registry] }).inc();
  const probes = await startProbeServer({ address: '127.0.0.1:0', serve: ['healthz', 'readyz'], registry });
  const metrics = await startProbeServer({ address: '127.0.0.1:0', serve: ['metrics'], registry });
  try {
    assert.notEqual(probes.port, metrics.port);
    assert.equal((await get(probes.port, '/healthz')).status, 200);
    assert.equal((await get(probes.port, '/metrics')).status, 404);
    assert.equal((await get(metrics.port, '/healthz')).status, 404);
    const m = await get(metrics.port, '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.body, /^drs_split_total 1$/m);
  } finally {
    await Promise.all([probes.close(), metrics.close()]);
  }
  await assert.rejects(startProbeServer({ address: '127.0.0.1:0', serve: ['metrics'] }), /needs a registry/);
});

void test('listen addresses', () => {
  assert.deepEqual(parseAddress(':8081'), { host: undefined, port: 8081 });
  assert.deepEqual(parseAddress('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  assert.deepEqual(parseAddress('[::1]:9090'), { host: '::1', port: 9090 });
  assert.throws(() => parseAddress('8081'), /invalid listen address/);
  assert.throws(() => parseAddress('host:'), /invalid port/);
  assert.throws(() => parseAddress(':70000'), /invalid port/);
});
