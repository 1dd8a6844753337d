import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileObjectType, previousFileFate } from '../../src/core/prune.ts';
import { toYaml } from '../../src/core/yaml.ts';

const served = new Set(['Deployment.apps', 'Service', 'Certificate.cert-manager.io', 'Certificate.cert']);
const ctx = (o: { prune?: boolean; failed?: string[] } = {}) => ({ prune: o.prune ?? true, served, failed: new Set(o.failed ?? []) });

describe('pruning previous files', () => {
  it('reads the type from the file itself, whatever its name', () => {
    assert.deepEqual(fileObjectType(toYaml({ apiVersion: 'cert-manager.io/v1', kind: 'Certificate', metadata: { name: 'x' } })), { group: 'cert-manager.io', kind: 'Certificate' });
    assert.deepEqual(fileObjectType(toYaml({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'x' } })), { group: '', kind: 'Service' });
    assert.equal(fileObjectType('notes: not an object\n'), undefined);
  });
  it('prunes only objects of types the source serves and read; keeps failed, unserved and everything with prune off', () => {
    const cert = { group: 'cert-manager.io', kind: 'Certificate' };
    assert.equal(previousFileFate(cert, false, ctx()), 'prune');
    assert.equal(previousFileFate({ group: 'cert', kind: 'Certificate' }, false, ctx({ failed: ['Certificate.cert'] })), 'keep', 'a LIST failed for this type');
    assert.equal(previousFileFate(cert, false, ctx({ failed: ['Certificate.cert'] })), 'prune', 'a similar group\'s failure is not this one\'s');
    assert.equal(previousFileFate({ group: 'example.com', kind: 'Widget' }, false, ctx()), 'keep-unserved');
    assert.equal(previousFileFate(cert, true, ctx()), 'keep', 'the object failed to transform: its last good file stays');
    assert.equal(previousFileFate(cert, false, ctx({ prune: false })), 'keep');
    assert.equal(previousFileFate(undefined, false, ctx()), 'prune', 'a stray non-object file in our folder');
  });
});
