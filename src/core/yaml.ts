// Deterministic YAML: the same object always renders to the same bytes, whatever order the API
// server or a transform produced keys in. Reviewers read these files, so the familiar keys come
// first (apiVersion, kind, metadata; `name` in every map) and the rest is alphabetical.
//
// This is a small emitter for JSON data rather than the `yaml` library's stringify: it is ~19x
// faster (`npx tsx bench/yaml.bench.ts`: 10,000 objects, 3.7 s with the library, 0.19 s here;
// a sync renders every object), and its quoting rule is ours to guarantee. A string
// is written plain only when no YAML reader on the way (kubectl and Flux read YAML 1.1, where
// `on`, `yes` and `2026-01-01` are not strings; sops reads with go-yaml v3) could take it for
// anything else; otherwise it is double-quoted (JSON escapes are valid YAML) or, when it has
// several lines, a literal block. The `yaml` library parses it back in the tests.
import { isRecord, setOwn } from './types.ts';

const TOP = ['apiVersion', 'kind', 'metadata'];
const NESTED_TOP = ['name', 'namespace'];

function orderedKeys(obj: Record<string, unknown>, top: readonly string[]): string[] {
  const rest: string[] = [];
  let hasTop = false;
  for (const k of Object.keys(obj)) {
    if (obj[k] === undefined) continue;
    if (top.includes(k)) hasTop = true;
    else rest.push(k);
  }
  rest.sort();
  return hasTop ? [...top.filter((k) => Object.hasOwn(obj, k) && obj[k] !== undefined), ...rest] : rest;
}

/**
 * The order toYaml writes a map's keys in (the document root has its own first keys). Anything
 * that depends on the written order, such as a SOPS MAC, must walk in this order: a JavaScript
 * object cannot hold it (integer-like keys such as "9" and "10" always come first, ascending).
 */
export const keyOrder = (obj: Record<string, unknown>, root: boolean): string[] => orderedKeys(obj, root ? TOP : NESTED_TOP);

/** The object with its keys in rendering order, as far as a JavaScript object can hold it (tests). */
export function canonicalize(value: unknown, depth = 0): unknown {
  if (Array.isArray(value)) return value.map((v) => canonicalize(v, depth + 1));
  if (!isRecord(value)) return value;
  const out: Record<string, unknown> = {};
  for (const k of orderedKeys(value, depth === 0 ? TOP : NESTED_TOP)) setOwn(out, k, canonicalize(value[k], depth + 1));
  return out;
}

const PLAIN = /^[A-Za-z_/][A-Za-z0-9_./:=@+,()%^$ -]*$/;
const YAML11_WORDS = /^(y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|null|Null|NULL)$/;
// Characters JSON.stringify leaves raw that YAML treats as line breaks or byte-order marks, or
// does not allow unescaped at all (DEL, C1 controls, U+FFFE/U+FFFF are not "printable").
const YAML_SPECIAL = /[\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff]/g;

// The `yaml` library's YAML 1.1 schema reads "e0" or "E+5" as a float (a bare exponent); no
// Kubernetes reader does, but quoting them costs nothing.
const BARE_EXPONENT = /^[eE][-+]?[0-9]+$/;

export function isPlainSafe(s: string): boolean {
  if (!PLAIN.test(s)) return false;
  // (The cheap tests first: most strings are names. The words are at most 5 characters long, the
  // exponents start with e or E; PLAIN has no '#', so no " #" comment either.)
  const last = s.charCodeAt(s.length - 1);
  if (last === 0x20 || last === 0x3a) return false; // ' ' or ':' at the end
  if (s.length <= 5 && YAML11_WORDS.test(s)) return false;
  const first = s.charCodeAt(0);
  if ((first === 0x65 || first === 0x45) && BARE_EXPONENT.test(s)) return false;
  return !s.includes(': ');
}

function quoted(s: string): string {
  return JSON.stringify(s).replace(YAML_SPECIAL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A multi-line string as a literal block, when that keeps it exactly; undefined otherwise. */
function literalBlock(s: string, indent: string): string[] | undefined {
  // Blocks cannot hold \r or non-printable characters faithfully, and a line of only
  // whitespace would be read back as an empty line.
  // eslint-disable-next-line no-control-regex
  if (/[\r\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff]/.test(s)) return undefined;
  const trailing = /\n*$/.exec(s)![0].length;
  const body = s.slice(0, s.length - trailing);
  if (body === '') return undefined;
  const lines = body.split('\n');
  if (lines.some((l) => l !== '' && l.trim() === '')) return undefined;
  const chomp = trailing === 0 ? '-' : trailing === 1 ? '' : '+';
  // A reader takes the block's indentation from its first non-empty line: when that line starts
  // with a space (after leading empty lines too), say the indentation explicitly. Also for a tab:
  // go-yaml v3 (sops) refuses a tab there unless the indentation is given.
  const firstText = lines.find((l) => l !== '') ?? '';
  const indicator = /^[ \t]/.test(firstText) ? '2' : '';
  const out = [`|${indicator}${chomp}`];
  for (const l of lines) out.push(l === '' ? '' : indent + l);
  for (let i = 1; i < trailing; i++) out.push('');
  return out;
}

/**
 * JavaScript writes 1e21 as "1e+21"; YAML 1.1 readers (PyYAML, the spec's own regex) take a float
 * only with a dot in the mantissa, so write "1.0e+21", which every reader takes as the number.
 */
function formatNumber(n: number): string {
  const s = String(n);
  return s.includes('e') && !s.includes('.') ? s.replace('e', '.0e') : s;
}

/** A string, number, boolean or null on one line; undefined for anything else. */
function scalar(v: unknown): string | undefined {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
      return isPlainSafe(v) ? v : quoted(v);
    case 'number':
      if (!Number.isFinite(v)) throw new Error(`cannot render ${v} as YAML`);
      return formatNumber(v);
    case 'boolean':
      return v ? 'true' : 'false';
    default:
      return undefined;
  }
}

// Keys repeat across objects (name, labels, app): each is checked once. Bounded (count and
// length), since a ConfigMap's keys can be anything.
const keys = new Map<string, string>();
function key(k: string): string {
  let out = keys.get(k);
  if (out === undefined) {
    out = isPlainSafe(k) ? k : quoted(k);
    if (k.length > 100) return out;
    if (keys.size >= 10_000) keys.clear();
    keys.set(k, out);
  }
  return out;
}

/** `head` is what precedes the value on its line ("key:" or "-"); children indent under `indent`. */
function emitValue(head: string, v: unknown, indent: string, out: string[], firstPrefix: string): void {
  if (typeof v === 'object' && v !== null) {
    const inner = indent + '  ';
    if (Array.isArray(v)) {
      if (v.length === 0) out.push(`${firstPrefix}${head} []`);
      else {
        out.push(`${firstPrefix}${head}`);
        emitSeq(v, inner, out);
      }
    } else {
      const ks = orderedKeys(v as Record<string, unknown>, NESTED_TOP);
      if (ks.length === 0) out.push(`${firstPrefix}${head} {}`);
      else {
        out.push(`${firstPrefix}${head}`);
        emitMap(v as Record<string, unknown>, ks, inner, out, inner);
      }
    }
    return;
  }
  if (typeof v === 'string' && v.includes('\n')) {
    const block = literalBlock(v, indent + '  ');
    if (block) {
      out.push(`${firstPrefix}${head} ${block[0]}`);
      for (let i = 1; i < block.length; i++) out.push(block[i]!);
      return;
    }
  }
  const s = scalar(v);
  if (s === undefined) throw new Error(`cannot render ${typeof v} as YAML`);
  out.push(`${firstPrefix}${head} ${s}`);
}

/** A map's `ks` (in rendering order); the first key's line starts with `firstPrefix`. */
function emitMap(obj: Record<string, unknown>, ks: readonly string[], indent: string, out: string[], firstPrefix: string): void {
  let prefix = firstPrefix;
  for (const k of ks) {
    emitValue(`${key(k)}:`, obj[k], indent, out, prefix);
    prefix = indent;
  }
}

function emitSeq(arr: readonly unknown[], indent: string, out: string[]): void {
  for (const item of arr) {
    if (Array.isArray(item) && item.length > 0) {
      out.push(`${indent}-`);
      emitSeq(item, indent + '  ', out);
    } else if (isRecord(item)) {
      const ks = orderedKeys(item, NESTED_TOP);
      // The first key shares the dash's line; the others align under it.
      if (ks.length) emitMap(item, ks, indent + '  ', out, `${indent}- `);
      else out.push(`${indent}- {}`);
    } else {
      emitValue('-', item, indent, out, indent);
    }
  }
}

// DEL and the C1 controls are escaped correctly in our files, yet kustomize (Flux's
// kustomize-controller, Argo CD, `kubectl apply -k`) cannot carry them: its YAML round trip
// through go-yaml fails the whole folder on DEL and C1 ("control characters are not allowed")
// and silently turns NEL (U+0085) into a space. Measured with kubectl v1.33's kustomize.
const KUSTOMIZE_UNREADABLE = /[\u007f-\u009f]/;

/**
 * The path of the first string (key or value) that GitOps tools cannot read back, or undefined.
 * Such an object is reported instead of written, so that one value cannot stop a DR cluster from
 * applying everything else.
 */
export function unreadableByGitOps(value: unknown): string | undefined {
  // A walk that builds no paths rules out almost every object (twice as fast as testing its JSON).
  return hasUnreadable(value) ? findUnreadable(value, '') : undefined;
}

function hasUnreadable(value: unknown): boolean {
  if (typeof value === 'string') return KUSTOMIZE_UNREADABLE.test(value);
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) return value.some(hasUnreadable);
  for (const k of Object.keys(value)) {
    const v = (value as Record<string, unknown>)[k];
    // (A key without a value is not written.)
    if (v !== undefined && (KUSTOMIZE_UNREADABLE.test(k) || hasUnreadable(v))) return true;
  }
  return false;
}

function findUnreadable(value: unknown, path: string): string | undefined {
  if (typeof value === 'string') return KUSTOMIZE_UNREADABLE.test(value) ? path || '(value)' : undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const p = findUnreadable(value[i], `${path}[${i}]`);
      if (p) return p;
    }
    return undefined;
  }
  if (!isRecord(value)) return undefined;
  for (const [k, v] of Object.entries(value)) {
    const p = KUSTOMIZE_UNREADABLE.test(k) ? `${path}.${JSON.stringify(k)}` : findUnreadable(v, path ? `${path}.${k}` : k);
    if (p) return p;
  }
  return undefined;
}

export function toYaml(value: unknown): string {
  const out: string[] = [];
  if (isRecord(value)) {
    const ks = orderedKeys(value, TOP);
    if (!ks.length) return '{}\n';
    emitMap(value, ks, '', out, '');
  } else if (Array.isArray(value) && value.length) {
    emitSeq(value, '', out);
  } else {
    const s = Array.isArray(value) ? '[]' : scalar(value);
    if (s === undefined) throw new Error(`cannot render ${typeof value} as YAML`);
    return `${s}\n`;
  }
  return out.join('\n') + '\n';
}
