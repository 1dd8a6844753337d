// Deterministic YAML: the same object always renders to the same bytes, whatever order the API
// server or a transform produced keys in. Reviewers read these files, so the familiar keys come
// first (apiVersion, kind, metadata; `name` in every map) and the rest is alphabetical.
//
// Strings that some YAML reader on the way could take for another type are double-quoted:
// kubectl and Flux read YAML 1.1 (where `on`, `yes` and `2026-01-01` are not strings), sops reads
// with go-yaml v3. Quoting them keeps a ConfigMap value "on" a string in the DR cluster.
import { Document, isScalar, visit } from 'yaml';
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

// Numbers, timestamps, .inf/.nan start like this; the rest are YAML 1.1 booleans, nulls and the
// merge/value keys.
const NUMBERISH_START = /^[-+.0-9<~=]/;
const YAML11_WORDS = /^(y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|null|Null|NULL)$/;

export function mustQuote(s: string): boolean {
  return s === '' || NUMBERISH_START.test(s) || YAML11_WORDS.test(s);
}

/** Renders keeping the object's key order (SOPS documents need exactly that). */
export function renderYaml(value: unknown): string {
  const doc = new Document(value, { version: '1.2', aliasDuplicateObjects: false });
  visit(doc, {
    Scalar(_key, node) {
      if (isScalar(node) && typeof node.value === 'string' && !node.value.includes('\n') && mustQuote(node.value)) node.type = 'QUOTE_DOUBLE';
    },
  });
  return doc.toString({ lineWidth: 0, minContentWidth: 0, indentSeq: true });
}

export function toYaml(value: unknown): string {
  return renderYaml(canonicalize(value));
}
