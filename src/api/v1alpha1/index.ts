// The dr-syncer.io/v1alpha1 API: types, schemas and a validator that applies the same defaults
// and rules as the API server, for `dr-syncer sync -f` (which runs without the CRDs installed).
import { Value, ValueErrorType } from '@sinclair/typebox/value';
import type { ValueError } from '@sinclair/typebox/value';
import type { TSchema } from '@sinclair/typebox';
import { Kind } from '@sinclair/typebox';
import { API_VERSION, CEL_CHECKS, PATTERN_HINT } from './common.ts';
import type { CelRule } from './common.ts';
import { RemoteClusterSchema } from './remotecluster.ts';
import type { RemoteCluster } from './remotecluster.ts';
import { ReplicationSchema } from './replication.ts';
import type { Replication } from './replication.ts';

export * from './common.ts';
export * from './remotecluster.ts';
export * from './replication.ts';
export { remoteClusterCrd, replicationCrd, manifestFiles, renderCrd, toStructural, MANIFEST_HEADER } from './crds.ts';


export type ValidationResult<T> = { ok: true; value: T } | { ok: false; errors: string[] };

type Node = Record<string | symbol, unknown>;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function child(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  if (!IDENT.test(key)) return `${path}[${key}]`;
  return path === '' ? key : `${path}.${key}`;
}

/** "/spec/transforms/0/patch/1/op" -> "spec.transforms[0].patch[1].op" */
function pointerToPath(pointer: string): string {
  let path = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    path = child(path, /^[0-9]+$/.test(seg) ? Number(seg) : seg);
  }
  return path === '' ? '(root)' : path;
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function typeName(schema: Node): string {
  if (schema['x-kubernetes-int-or-string'] === true) return 'an integer or a string';
  switch (schema.type) {
    case 'object':
      return 'an object';
    case 'array':
      return 'a list';
    case 'integer':
      return 'an integer';
    case 'boolean':
      return 'true or false';
    case 'string':
      return 'a string';
    case 'number':
      return 'a number';
    default:
      return 'a value';
  }
}

function describeError(e: ValueError): string {
  const path = pointerToPath(e.path);
  const schema = e.schema as unknown as Node;
  const v = e.value;
  switch (e.type) {
    case ValueErrorType.ObjectRequiredProperty:
      return `${path}: required field is missing`;
    case ValueErrorType.StringPattern: {
      const hint = schema[PATTERN_HINT];
      return `${path}: invalid value ${show(v)}: ${typeof hint === 'string' ? hint : `must match ${String(schema.pattern)}`}`;
    }
    case ValueErrorType.StringMaxLength:
      return `${path}: must be at most ${String(schema.maxLength)} characters long (got ${(v as string).length})`;
    case ValueErrorType.StringMinLength:
      return schema.minLength === 1 ? `${path}: must not be empty` : `${path}: must be at least ${String(schema.minLength)} characters long`;
    case ValueErrorType.StringFormat:
      return `${path}: invalid value ${show(v)}: must be an RFC 3339 timestamp such as "2024-01-02T03:04:05Z"`;
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum:
      return `${path}: invalid value ${show(v)}: must be at least ${String(schema.minimum)}`;
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum:
      return `${path}: invalid value ${show(v)}: must be at most ${String(schema.maximum)}`;
    case ValueErrorType.ArrayMaxItems:
      return `${path}: must have at most ${String(schema.maxItems)} items`;
    case ValueErrorType.ArrayMinItems:
      return `${path}: must have at least ${String(schema.minItems)} item${schema.minItems === 1 ? '' : 's'}`;
    case ValueErrorType.Kind: {
      if (Array.isArray(schema.enum)) {
        return `${path}: unsupported value ${show(v)}: must be one of ${(schema.enum as string[]).map((x) => `"${x}"`).join(', ')}`;
      }
      if (schema[Kind] === 'DrStringMap') return `${path}: must be a map of strings to strings (quote numbers and booleans, e.g. "true")`;
      if (schema[Kind] === 'DrQuantityMap') {
        return `${path}: every value must be a quantity such as 500m, 2, 1Gi or 256Mi`;
      }
      return `${path}: must be ${typeName(schema)} (got ${show(v)})`;
    }
    default:
      if (e.type === ValueErrorType.String || e.type === ValueErrorType.Integer || e.type === ValueErrorType.Boolean ||
        e.type === ValueErrorType.Object || e.type === ValueErrorType.Array || e.type === ValueErrorType.Number) {
        return `${path}: must be ${typeName(schema)} (got ${show(v)})`;
      }
      return `${path}: ${e.message}`;
  }
}

/**
 * What the API server checks beyond the plain schema: unknown fields (kubectl's strict field
 * validation), duplicates in set/map lists, and the CEL rules (through their TS twins).
 */
function walk(schema: Node, value: unknown, path: string, errors: string[]): void {
  if (value === undefined) return;
  const rules = schema[CEL_CHECKS] as Array<CelRule<unknown>> | undefined;
  for (const r of rules ?? []) {
    let ok = true;
    try {
      ok = r.check(value);
    } catch {
      // The value has the wrong shape; the schema errors already say so.
    }
    if (ok) continue;
    if (r.fieldPath !== undefined) errors.push(`${path}${r.fieldPath}: ${r.message}`);
    else if (typeof value === 'string' || typeof value === 'number') errors.push(`${path}: ${r.message} (got ${show(value)})`);
    else errors.push(`${path || '(root)'}: ${r.message}`);
  }
  if (schema.type === 'object' && isRecord(value)) {
    const props = schema.properties as Record<string, Node> | undefined;
    if (props !== undefined && Object.keys(props).length > 0) {
      for (const [key, v] of Object.entries(value)) {
        const p = props[key];
        if (p !== undefined) walk(p, v, child(path, key), errors);
        else if (schema['x-kubernetes-preserve-unknown-fields'] !== true) {
          errors.push(`${child(path, key)}: unknown field "${key}"`);
        }
      }
    }
  } else if (schema.type === 'array' && Array.isArray(value)) {
    const listType = schema['x-kubernetes-list-type'];
    const seen = new Map<string, number>();
    value.forEach((item, i) => {
      let key: string | undefined;
      if (listType === 'set') key = JSON.stringify(item);
      if (listType === 'map' && isRecord(item)) {
        key = JSON.stringify((schema['x-kubernetes-list-map-keys'] as string[]).map((k) => item[k]));
      }
      if (key !== undefined) {
        const first = seen.get(key);
        if (first !== undefined) errors.push(`${child(path, i)}: duplicate entry (same as ${child(path, first)})`);
        else seen.set(key, i);
      }
      walk(schema.items as Node, item, child(path, i), errors);
    });
  }
}

function validate<T>(schema: TSchema, obj: unknown, kind: string): ValidationResult<T> {
  if (!isRecord(obj)) return { ok: false, errors: [`(root): a ${kind} must be a YAML/JSON object`] };
  const errors: string[] = [];
  if (obj.apiVersion !== API_VERSION) {
    errors.push(`apiVersion: must be "${API_VERSION}" (got ${show(obj.apiVersion)})`);
  }
  if (obj.kind !== kind) errors.push(`kind: must be "${kind}" (got ${show(obj.kind)})`);
  if (errors.length > 0) return { ok: false, errors };

  // Defaulting before validation, as the API server does. Clone: the caller's object stays as is.
  const value = Value.Default(schema, Value.Clone(obj)) as unknown;
  const seen = new Set<string>();
  for (const e of Value.Errors(schema, value)) {
    // TypeBox reports a missing required field twice (required + wrong type): keep the first.
    if (seen.has(e.path)) continue;
    seen.add(e.path);
    errors.push(describeError(e));
  }
  walk(schema as unknown as Node, value, '', errors);
  const unique = [...new Set(errors)];
  return unique.length > 0 ? { ok: false, errors: unique } : { ok: true, value: value as T };
}

/** Validates a Replication the way the API server would with the CRD installed, and returns it with defaults applied. */
export function validateReplication(obj: unknown): ValidationResult<Replication> {
  return validate<Replication>(ReplicationSchema, obj, 'Replication');
}

/** Validates a RemoteCluster the way the API server would with the CRD installed, and returns it with defaults applied. */
export function validateRemoteCluster(obj: unknown): ValidationResult<RemoteCluster> {
  return validate<RemoteCluster>(RemoteClusterSchema, obj, 'RemoteCluster');
}

export type PvcSync = NonNullable<RemoteCluster['spec']['pvcSync']>;

/**
 * Validates the PVC-sync settings of the controller's own cluster (--local-pvc-sync, the Helm
 * chart's pvcSync values) with exactly the rules of RemoteCluster.spec.pvcSync; errors name the
 * field as it appears in that file.
 */
export function validatePvcSync(obj: unknown): ValidationResult<PvcSync> {
  const shell = { apiVersion: API_VERSION, kind: 'RemoteCluster', metadata: { name: 'local' }, spec: { kubeconfigSecretRef: { name: 'local' }, pvcSync: obj ?? {} } };
  const r = validateRemoteCluster(shell);
  return r.ok ? { ok: true, value: r.value.spec.pvcSync ?? {} } : { ok: false, errors: r.errors.map((e) => e.replace(/^spec\.pvcSync\.?/, '')) };
}
