// The Helm chart's static parts against their sources of truth: the version (package.json) and the
// pvcSync values (RemoteCluster spec.pvcSync). Rendering and installing: test/integration/chart.test.ts.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Value } from '@sinclair/typebox/value';
import { parse } from 'yaml';
import { PvcSyncSpec } from '../../src/api/v1alpha1/remotecluster.ts';
import { DEFAULT_RESOURCE_TYPES } from '../../src/core/select.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const chartDir = path.join(root, 'charts', 'dr-syncer');
const read = (p: string) => readFileSync(path.join(chartDir, p), 'utf8');

type Schema = { properties: Record<string, Schema & { enum?: unknown[]; type?: unknown }> } & Record<string, unknown>;

describe('Helm chart', () => {
  it("version and appVersion are package.json's version", () => {
    const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
    const chart = parse(read('Chart.yaml')) as { version: string; appVersion: string };
    assert.equal(chart.version, pkg.version, 'Chart.yaml version: set it to package.json version');
    assert.equal(chart.appVersion, pkg.version, 'Chart.yaml appVersion: set it to package.json version');
  });

  it('pvcSync values have exactly the fields of RemoteCluster spec.pvcSync, with its defaults', () => {
    const values = parse(read('values.yaml')) as { pvcSync: Record<string, unknown> };
    const specFields = Object.keys(PvcSyncSpec.properties).sort();
    assert.deepEqual(Object.keys(values.pvcSync).sort(), specFields);
    const schema = JSON.parse(read('values.schema.json')) as Schema;
    assert.deepEqual(Object.keys(schema.properties.pvcSync!.properties).sort(), specFields);
    // Where the API has a default, the chart uses the same one.
    for (const [k, v] of Object.entries(PvcSyncSpec.properties)) {
      const def = (v as { default?: unknown }).default;
      if (def !== undefined && k !== 'enabled') assert.deepEqual(values.pvcSync[k], def, `pvcSync.${k}`);
    }
    // The enums agree.
    assert.deepEqual(schema.properties.pvcSync!.properties.agentAddress!.enum, ['InternalIP', 'ExternalIP', 'Hostname']);
    assert.deepEqual((PvcSyncSpec.properties.agentAddress as unknown as { enum: string[] }).enum, ['InternalIP', 'ExternalIP', 'Hostname']);
  });

  it('the default pvcSync values, enabled and with empty fields left out as the chart does, are a valid spec.pvcSync', () => {
    const values = parse(read('values.yaml')) as { pvcSync: Record<string, unknown> };
    const set = (v: unknown) => typeof v === 'boolean' || typeof v === 'number' || (typeof v === 'string' && v !== '') || (typeof v === 'object' && v !== null && Object.keys(v).length > 0);
    const spec = Object.fromEntries(Object.entries({ ...values.pvcSync, enabled: true }).filter(([, v]) => set(v)));
    assert.ok(Value.Check(PvcSyncSpec, spec), JSON.stringify([...Value.Errors(PvcSyncSpec, spec)].map((e) => `${e.path}: ${e.message}`)));
  });

  it('the values schema refuses Secrets in rbac.sourceRead.rules (rbac.sourceSecrets is the switch)', () => {
    const schema = JSON.parse(read('values.schema.json')) as { properties: { rbac: Schema } };
    const rules = schema.properties.rbac.properties.sourceRead!.properties.rules as unknown as { items: { properties: { resources: { items: { not: { enum: string[] } } } } } };
    assert.deepEqual(rules.items.properties.resources.items.not.enum, ['secrets']);
  });

  it('the default read list covers the default resource types of a Replication, Secrets excepted', () => {
    const values = parse(read('values.yaml')) as { rbac: { sourceRead: { rules: { apiGroups: string[]; resources: string[] }[] } } };
    const readable = new Set(values.rbac.sourceRead.rules.flatMap((r) => r.resources));
    assert.deepEqual(DEFAULT_RESOURCE_TYPES.filter((t) => t !== 'secrets' && !readable.has(t)), []);
  });
});
