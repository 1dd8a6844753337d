// Deterministic YAML: the same object always renders to the same bytes, whatever order the API
// server or a transform produced keys in. Reviewers read these files, so the familiar keys come
// first (apiVersion, kind, metadata; `name` in every map) and the rest is alphabetical.
import { stringify } from 'yaml';
import { isRecord } from './types.ts';

const TOP = ['apiVersion', 'kind', 'metadata'];

function order(keys: string[], top: readonly string[]): string[] {
  const first = top.filter((k) => keys.includes(k));
  const rest = keys.filter((k) => !top.includes(k)).sort();
  return [...first, ...rest];
}

export function canonicalize(value: unknown, depth = 0): unknown {
  if (Array.isArray(value)) return value.map((v) => canonicalize(v, depth + 1));
  if (!isRecord(value)) return value;
  const out: Record<string, unknown> = {};
  const keys = Object.keys(value).filter((k) => value[k] !== undefined);
  for (const k of order(keys, depth === 0 ? TOP : ['name', 'namespace'])) out[k] = canonicalize(value[k], depth + 1);
  return out;
}

export function toYaml(value: unknown): string {
  return stringify(canonicalize(value), { lineWidth: 0, minContentWidth: 0, aliasDuplicateObjects: false, indentSeq: true });
}
