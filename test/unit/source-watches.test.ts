// The source watches of Continuous mode, on a scripted list+watch client: the Replication is told
// once its watches have listed, status-only updates are not changes, only objects in the selected
// namespaces count, and digest() follows the content the caches hold.
import assert from 'node:assert/strict';
import type http from 'node:http';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import type { KubeClient } from '../../src/adapters/kube/client.ts';
import { SourceWatches } from '../../src/controllers/source-watches.ts';
import type { KubeObject } from '../../src/core/types.ts';
import { silentLogger } from '../../src/util/log.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ns = (name: string, rv: string): KubeObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, resourceVersion: rv, labels: { dr: 'yes' } } });
const cm = (namespace: string, name: string, rv: string, v: string, status?: unknown): KubeObject =>
  ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace, resourceVersion: rv }, data: { v }, ...(status ? { status } : {}) });

/** Lists what `lists` holds per path; each watch is a stream the test writes events into. */
function scripted(lists: Record<string, KubeObject[]>) {
  const streams = new Map<string, Readable>();
  const client = {
    list: (path: string) => Promise.resolve({ items: lists[path] ?? [], resourceVersion: '10' }),
    raw: (_m: string, url: string, _b: unknown, _c: unknown, signal?: AbortSignal) => {
      const s = new Readable({ read() {} });
      signal?.addEventListener('abort', () => s.destroy(), { once: true });
      streams.set(url.split('?')[0]!, s);
      return Promise.resolve(Object.assign(s, { statusCode: 200 }) as unknown as http.IncomingMessage);
    },
  };
  const send = (path: string, type: string, object: KubeObject) => streams.get(path)!.push(`${JSON.stringify({ type, object })}\n`);
  return { client: client as unknown as KubeClient, send, watching: (path: string) => streams.has(path) };
}

describe('SourceWatches', () => {
  it('notifies once listed; ignores status-only updates and unselected namespaces; the digest follows content', async () => {
    const { client, send, watching } = scripted({
      '/api/v1/namespaces': [ns('shop', '1')],
      '/api/v1/configmaps': [cm('shop', 'a', '2', '1'), cm('other', 'x', '3', '1')],
    });
    const changes: string[] = [];
    const w = new SourceWatches(silentLogger, (r) => changes.push(r));
    try {
      w.set('dr/r', client, [
        { path: '/api/v1/namespaces', labelSelector: 'dr=yes', selectsNamespaces: true },
        { path: '/api/v1/configmaps', inSelectedNamespaces: true },
      ], 20);
      for (let i = 0; i < 100 && !(watching('/api/v1/namespaces') && watching('/api/v1/configmaps')); i++) await sleep(10);
      assert.deepEqual(changes, ['dr/r'], 'told once the watches have listed');
      const d0 = w.digest('dr/r');
      assert.ok(d0);

      send('/api/v1/configmaps', 'MODIFIED', cm('shop', 'a', '4', '1', { observed: 2 })); // status and resourceVersion only
      send('/api/v1/configmaps', 'MODIFIED', cm('other', 'x', '5', '2')); // a namespace not selected
      await sleep(150);
      assert.deepEqual(changes, ['dr/r']);
      assert.equal(w.digest('dr/r'), d0);

      send('/api/v1/configmaps', 'MODIFIED', cm('shop', 'a', '6', '2'));
      await sleep(150);
      assert.deepEqual(changes, ['dr/r', 'dr/r']);
      const d1 = w.digest('dr/r');
      assert.notEqual(d1, d0);

      // The other namespace gets the label: its objects count from now on.
      send('/api/v1/namespaces', 'ADDED', ns('other', '7'));
      await sleep(150);
      assert.equal(changes.length, 3);
      assert.notEqual(w.digest('dr/r'), d1);
    } finally {
      await w.stop();
    }
  });
});
