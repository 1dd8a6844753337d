// SOPS (getsops/sops v3) encryption of Kubernetes Secrets for age recipients, written so that the
// real `sops` CLI and Flux's kustomize-controller (the sops Go library) decrypt it and verify its MAC.
//
// Format, as read in the sops sources (aes/cipher.go, sops.go, stores/stores.go, stores/yaml):
// - every leaf whose path has a key matching encrypted_regex becomes
//   ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<str|int|float|bool>] (standard base64);
//   AES-256-GCM with a 32-byte IV and a 16-byte tag; the additional data is the path of map keys
//   joined by ":" plus a trailing ":" (list indexes are not part of the path). Empty strings and
//   nulls stay as they are.
// - MAC: SHA-512 over the plaintext bytes of every non-null leaf of the document (encrypted or not,
//   in document order; bools as "True"/"False"), upper-case hex, itself encrypted as a str value
//   with `lastmodified` (RFC 3339, UTC, whole seconds) as the additional data.
// - the data key (32 random bytes) is age-encrypted separately for each recipient and armored.
// The MAC covers the document in the order it is written, so encryption walks maps in the order
// our YAML emitter writes them (keyOrder) and the result must be written by toYaml, which also
// quotes every string a YAML 1.1 or 1.2 reader (go-yaml in sops) could retype. Decryption of a
// file walks it in its own document order.
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  randomBytes as cryptoRandomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { Decrypter, Encrypter, armor } from 'age-encryption';
import { parseDocument } from 'yaml';
import { keyOrder } from '../yaml.ts';
import { setOwn } from '../types.ts';

/** The Flux convention for Secrets: only `data`/`stringData` values are encrypted. */
export const SOPS_ENCRYPTED_REGEX = '^(data|stringData)$';
/** sops version recorded in the metadata (must be semver: sops parses it); the format we write. */
export const SOPS_FORMAT_VERSION = '3.13.3';
/** Annotation holding the keyed digest of the plaintext, see sopsPlaintextDigest(). */
export const SOPS_DIGEST_ANNOTATION = 'dr-syncer.io/sops-digest';

const NONCE_SIZE = 32;
const TAG_SIZE = 16;
const DATA_KEY_SIZE = 32;
// v2: files written before the MAC followed the written key order (v1) can carry a MAC sops
// rejects (Secrets with keys such as "9" and "10"); a new scheme makes every one re-encrypt once.
const DIGEST_PREFIX = 'hmac-sha256-v2:';
const ENC_RE = /^ENC\[AES256_GCM,data:([^,]*),iv:([^,]+),tag:([^,]+),type:([^\]]+)\]$/;
// X25519 recipients only: the hybrid/plugin forms (age1pq1..., age1tag1...) contain a second "1",
// which sops hands to an age plugin binary that kustomize-controller does not have.
const X25519_RECIPIENT_RE = /^age1[02-9ac-hj-np-z]{58}$/;

export interface SopsEncryptOptions {
  ageRecipients: string[];
  /** lastmodified; fractional seconds are dropped like sops does. */
  now: Date;
  /** Test hook: the 32-byte data key (random otherwise). */
  dataKey?: Uint8Array;
  /** Test hook: source of IVs (and of the data key when dataKey is absent). */
  randomBytes?: (n: number) => Uint8Array;
  /** When set, writes the SOPS_DIGEST_ANNOTATION (see sopsPlaintextDigest) before encrypting. */
  digestKey?: Uint8Array;
}

type Plain = Record<string, unknown>;
type Leaf = string | number | boolean;

interface CryptRules {
  encryptedRegex?: RegExp;
  unencryptedRegex?: RegExp;
  encryptedSuffix?: string;
  unencryptedSuffix?: string;
}

function isPlainObject(v: unknown): v is Plain {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function shouldEncrypt(path: readonly string[], r: CryptRules): boolean {
  // Same precedence as sops' Tree.shouldBeEncrypted (only one rule is ever set in practice).
  let enc = true;
  if (r.unencryptedSuffix && path.some((k) => k.endsWith(r.unencryptedSuffix!))) enc = false;
  if (r.encryptedSuffix) enc = path.some((k) => k.endsWith(r.encryptedSuffix!));
  if (r.unencryptedRegex && path.some((k) => r.unencryptedRegex!.test(k))) enc = false;
  if (r.encryptedRegex) enc = path.some((k) => r.encryptedRegex!.test(k));
  return enc;
}

/** Go's strconv.FormatFloat(f, 'f', -1, 64): shortest round-trip digits, never an exponent. */
function goFormatFloat(n: number): string {
  const s = String(n);
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (!m) return s;
  const [, sign, lead, frac = '', expS] = m;
  const digits = lead! + frac;
  const exp = Number(expS);
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const point = 1 + exp;
  return point >= digits.length
    ? `${sign}${digits}${'0'.repeat(point - digits.length)}`
    : `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** Type tag and bytes as sops' Cipher.Encrypt / ToBytes produce them for a YAML-decoded value. */
function leafBytes(v: Leaf, path: readonly string[]): { type: string; text: string } {
  if (typeof v === 'string') return { type: 'str', text: v };
  if (typeof v === 'boolean') return { type: 'bool', text: v ? 'True' : 'False' };
  if (!Number.isFinite(v)) throw new Error(`sops: non-finite number at ${path.join('.')}`);
  if (Number.isInteger(v)) {
    // Beyond 2^53 the YAML text and the JS value disagree; refuse rather than write a bad MAC.
    if (!Number.isSafeInteger(v)) throw new Error(`sops: integer out of safe range at ${path.join('.')}`);
    return { type: 'int', text: String(v) };
  }
  return { type: 'float', text: goFormatFloat(v) };
}

type LeafFn = (v: Leaf, path: readonly string[]) => unknown;

// Walks like sops' walkBranch/walkValue: map keys extend the path, list items keep it; nulls are
// left alone and are not part of the MAC. Maps are visited in document order: a Map (parsed from
// a file) in its own order, a plain object in the order toYaml writes it. Returns plain objects.
function walk(value: unknown, path: readonly string[], onLeaf: LeafFn): unknown {
  if (value === null) return null;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
    return onLeaf(value, path);
  }
  if (Array.isArray(value)) return value.map((item: unknown) => walk(item, path, onLeaf));
  const entries: [string, unknown][] | undefined =
    value instanceof Map ? [...(value as Map<unknown, unknown>)].map(([k, v]) => [String(k), v])
    : isPlainObject(value) ? keyOrder(value, path.length === 0).map((k) => [k, value[k]])
    : undefined;
  if (entries) {
    const out: Plain = {};
    for (const [k, v] of entries) {
      if (v === undefined) continue; // a YAML renderer drops it too
      setOwn(out, k, walk(v, [...path, k], onLeaf));
    }
    return out;
  }
  throw new Error(`sops: unsupported value of type ${typeof value} at ${path.join('.') || '<root>'}`);
}

function gcmEncrypt(key: Uint8Array, iv: Uint8Array, type: string, text: string, aad: string): string {
  const c = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_SIZE });
  c.setAAD(Buffer.from(aad, 'utf8'));
  const data = Buffer.concat([c.update(Buffer.from(text, 'utf8')), c.final()]);
  const tag = c.getAuthTag();
  return `ENC[AES256_GCM,data:${data.toString('base64')},iv:${Buffer.from(iv).toString('base64')},tag:${tag.toString('base64')},type:${type}]`;
}

function gcmDecrypt(key: Uint8Array, value: string, aad: string): { type: string; text: string } {
  const m = ENC_RE.exec(value);
  if (!m) throw new Error('sops: value is not in the ENC[AES256_GCM,...] format');
  const [, data, iv, tag, type] = m;
  const d = createDecipheriv('aes-256-gcm', key, Buffer.from(iv!, 'base64'), { authTagLength: TAG_SIZE });
  d.setAAD(Buffer.from(aad, 'utf8'));
  d.setAuthTag(Buffer.from(tag!, 'base64'));
  const text = Buffer.concat([d.update(Buffer.from(data!, 'base64')), d.final()]).toString('utf8');
  return { type: type!, text };
}

function typedFromText(type: string, text: string, where: string): Leaf {
  switch (type) {
    case 'str':
    case 'bytes':
      return text;
    case 'int':
    case 'int64':
    case 'float': {
      const n = Number(text);
      if (text.trim() === '' || !Number.isFinite(n)) throw new Error(`sops: bad ${type} at ${where}`);
      return n;
    }
    case 'bool':
      // Go strconv.ParseBool
      if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(text)) return true;
      if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(text)) return false;
      throw new Error(`sops: bad bool at ${where}`);
    default:
      throw new Error(`sops: unsupported encrypted type "${type}" at ${where}`);
  }
}

/** Go's time.Format(time.RFC3339) of a UTC time. */
export function sopsTimestamp(now: Date): string {
  if (Number.isNaN(now.getTime())) throw new Error('sops: invalid date');
  return now.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function normalizeAgeRecipients(recipients: readonly string[]): string[] {
  const out: string[] = [];
  for (const raw of recipients) {
    const r = raw.trim();
    if (!X25519_RECIPIENT_RE.test(r)) {
      throw new Error(`sops: "${raw}" is not an age X25519 recipient (age1... , 62 characters)`);
    }
    if (!out.includes(r)) out.push(r);
  }
  if (out.length === 0) throw new Error('sops: at least one age recipient is required');
  return out;
}

async function ageWrap(dataKey: Uint8Array, recipient: string): Promise<string> {
  const e = new Encrypter();
  e.addRecipient(recipient);
  return armor.encode(await e.encrypt(dataKey));
}

function withoutDigestAnnotation(secret: Plain): Plain {
  const meta = secret.metadata;
  if (!isPlainObject(meta) || !isPlainObject(meta.annotations) || !(SOPS_DIGEST_ANNOTATION in meta.annotations)) {
    return secret;
  }
  const annotations = { ...meta.annotations };
  delete annotations[SOPS_DIGEST_ANNOTATION];
  const metadata: Plain = { ...meta, annotations };
  if (Object.keys(annotations).length === 0) delete metadata.annotations;
  return { ...secret, metadata };
}

function withDigestAnnotation(secret: Plain, digest: string): Plain {
  const meta = isPlainObject(secret.metadata) ? secret.metadata : {};
  const annotations = isPlainObject(meta.annotations) ? meta.annotations : {};
  return { ...secret, metadata: { ...meta, annotations: { ...annotations, [SOPS_DIGEST_ANNOTATION]: digest } } };
}

/**
 * Encrypts a Secret (any YAML-shaped object) in the SOPS format for age recipients. The result
 * carries the `sops` metadata key last; write it with toYaml (the MAC follows its key order).
 */
export async function encryptSecretSops(secret: Plain, opts: SopsEncryptOptions): Promise<Plain> {
  if (!isPlainObject(secret)) throw new Error('sops: the document must be a mapping');
  if ('sops' in secret) throw new Error('sops: the document already has a top-level "sops" key');
  const recipients = normalizeAgeRecipients(opts.ageRecipients);
  const rand = opts.randomBytes ?? ((n: number) => new Uint8Array(cryptoRandomBytes(n)));
  const draw = (n: number): Uint8Array => {
    const b = rand(n);
    if (b.length !== n) throw new Error(`sops: randomBytes(${n}) returned ${b.length} bytes`);
    return b;
  };
  const dataKey = opts.dataKey ?? draw(DATA_KEY_SIZE);
  if (dataKey.length !== DATA_KEY_SIZE) throw new Error('sops: the data key must be 32 bytes');
  const lastmodified = sopsTimestamp(opts.now);

  let doc = withoutDigestAnnotation(secret);
  if (opts.digestKey) {
    doc = withDigestAnnotation(doc, sopsPlaintextDigest(secret, { key: opts.digestKey, ageRecipients: recipients }));
  }

  const rules: CryptRules = { encryptedRegex: new RegExp(SOPS_ENCRYPTED_REGEX) };
  const mac = createHash('sha512');
  const encrypted = walk(doc, [], (v, path) => {
    const { type, text } = leafBytes(v, path);
    mac.update(text, 'utf8');
    if (!shouldEncrypt(path, rules) || (type === 'str' && text === '')) return v; // sops keeps "" as is
    return gcmEncrypt(dataKey, draw(NONCE_SIZE), type, text, `${path.join(':')}:`);
  }) as Plain;
  const macHex = mac.digest('hex').toUpperCase();

  const age: { recipient: string; enc: string }[] = [];
  for (const recipient of recipients) age.push({ recipient, enc: await ageWrap(dataKey, recipient) });

  return {
    ...encrypted,
    sops: {
      age,
      lastmodified,
      mac: gcmEncrypt(dataKey, draw(NONCE_SIZE), 'str', macHex, lastmodified),
      encrypted_regex: SOPS_ENCRYPTED_REGEX,
      version: SOPS_FORMAT_VERSION,
    },
  };
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/**
 * Decrypts a SOPS document with an age identity (one or more AGE-SECRET-KEY-1... lines, e.g. the
 * content of a keys.txt) and verifies its MAC like sops does. Returns the document without `sops`.
 * Give the file's text to verify it in its own key order; an object is taken in toYaml's order.
 */
export async function decryptSecretSops(input: Plain | string, ageIdentity: string): Promise<Plain> {
  const obj: unknown = typeof input === 'string' ? parseDocument(input).toJS({ mapAsMap: true }) : input;
  const field = (o: unknown, k: string): unknown => (o instanceof Map ? (o as Map<unknown, unknown>).get(k) : isPlainObject(o) ? o[k] : undefined);
  const sopsMeta = field(obj, 'sops');
  if (!(obj instanceof Map || isPlainObject(obj)) || sopsMeta === undefined) throw new Error('sops: metadata not found');
  const meta = walk(sopsMeta, [], (v) => v) as Plain;
  const identities = ageIdentity
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.startsWith('AGE-SECRET-KEY-'));
  if (identities.length === 0) throw new Error('sops: no age identity given');
  const entries = Array.isArray(meta.age) ? (meta.age as unknown[]) : [];
  let dataKey: Uint8Array | undefined;
  const errors: string[] = [];
  for (const entry of entries) {
    if (!isPlainObject(entry) || typeof entry.enc !== 'string') continue;
    try {
      const d = new Decrypter();
      for (const id of identities) d.addIdentity(id);
      dataKey = await d.decrypt(armor.decode(entry.enc));
      break;
    } catch (err) {
      errors.push(`${String(entry.recipient)}: ${(err as Error).message}`);
    }
  }
  if (!dataKey) throw new Error(`sops: could not decrypt the data key with age (${errors.join('; ') || 'no age keys'})`);
  if (dataKey.length !== DATA_KEY_SIZE) throw new Error('sops: the data key is not 32 bytes');

  const rules: CryptRules = {
    encryptedRegex: str(meta.encrypted_regex) !== undefined ? new RegExp(meta.encrypted_regex as string) : undefined,
    unencryptedRegex:
      str(meta.unencrypted_regex) !== undefined ? new RegExp(meta.unencrypted_regex as string) : undefined,
    encryptedSuffix: str(meta.encrypted_suffix),
    unencryptedSuffix: str(meta.unencrypted_suffix),
  };
  if (!rules.encryptedRegex && !rules.unencryptedRegex && !rules.encryptedSuffix && !rules.unencryptedSuffix) {
    rules.unencryptedSuffix = '_unencrypted'; // sops' default
  }
  const lastmodified = meta.lastmodified;
  if (typeof lastmodified !== 'string') throw new Error('sops: lastmodified missing');
  const lm = new Date(lastmodified);
  if (Number.isNaN(lm.getTime())) throw new Error('sops: lastmodified is not RFC 3339');

  const key = dataKey;
  const body = obj instanceof Map ? new Map(obj) : { ...obj };
  if (body instanceof Map) body.delete('sops');
  else delete body.sops;
  const mac = createHash('sha512');
  const plain = walk(body, [], (v, path) => {
    let out: Leaf = v;
    if (shouldEncrypt(path, rules) && v !== '') {
      if (typeof v !== 'string') throw new Error(`sops: expected an encrypted value at ${path.join('.')}`);
      const { type, text } = gcmDecrypt(key, v, `${path.join(':')}:`);
      out = typedFromText(type, text, path.join('.'));
    }
    mac.update(leafBytes(out, path).text, 'utf8');
    return out;
  }) as Plain;
  const computed = mac.digest('hex').toUpperCase();
  if (typeof meta.mac !== 'string') throw new Error('sops: mac missing');
  const stored = gcmDecrypt(key, meta.mac, sopsTimestamp(lm)).text;
  if (stored !== computed) throw new Error(`sops: MAC mismatch. File has ${stored}, computed ${computed}`);
  return plain;
}

// ---- unchanged detection ------------------------------------------------------------------------

function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (isPlainObject(v)) {
    const keys = Object.keys(v)
      .filter((k) => v[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(',')}}`;
  }
  if (v === undefined) return 'null';
  return JSON.stringify(v);
}

export interface SopsDigestOptions {
  /** Per-Replication secret key (>= 32 bytes), kept in a Kubernetes Secret, never in Git. */
  key: Uint8Array;
  ageRecipients: string[];
}

/**
 * Keyed digest of what an encrypted rendering depends on: the plaintext Secret (minus the digest
 * annotation itself), the recipient set and the encryption rule. An HMAC, not a plain hash: the
 * digest is stored in Git next to the ciphertext, and a bare SHA-256 of a low-entropy value
 * (a short password) could be brute-forced offline.
 */
export function sopsPlaintextDigest(secret: Plain, opts: SopsDigestOptions): string {
  if (opts.key.length < 32) throw new Error('sops: the digest key must be at least 32 bytes');
  const recipients = normalizeAgeRecipients(opts.ageRecipients).sort();
  const canonical = canonicalJson({
    scheme: DIGEST_PREFIX,
    encryptedRegex: SOPS_ENCRYPTED_REGEX,
    recipients,
    object: withoutDigestAnnotation(secret),
  });
  return DIGEST_PREFIX + createHmac('sha256', opts.key).update(canonical, 'utf8').digest('base64url');
}

/**
 * Returns `prevEncrypted` when it was rendered from the same plaintext for the same recipients (its
 * digest annotation matches), so the Git writer keeps the file as it is; undefined when the
 * Secret must be encrypted again. Needs no age private key.
 */
export function sopsReuseIfUnchanged(
  prevEncrypted: unknown,
  newPlain: Plain,
  opts: SopsDigestOptions,
): Plain | undefined {
  if (!isPlainObject(prevEncrypted) || !isPlainObject(prevEncrypted.sops)) return undefined;
  const meta = prevEncrypted.metadata;
  const annotations = isPlainObject(meta) && isPlainObject(meta.annotations) ? meta.annotations : undefined;
  const prevDigest = annotations?.[SOPS_DIGEST_ANNOTATION];
  if (typeof prevDigest !== 'string') return undefined;
  const prevRecipients = Array.isArray(prevEncrypted.sops.age)
    ? (prevEncrypted.sops.age as unknown[]).map((e) => (isPlainObject(e) ? e.recipient : undefined))
    : [];
  const wanted = normalizeAgeRecipients(opts.ageRecipients);
  if (
    prevEncrypted.sops.encrypted_regex !== SOPS_ENCRYPTED_REGEX ||
    prevRecipients.length !== wanted.length ||
    !wanted.every((r) => prevRecipients.includes(r))
  ) {
    return undefined;
  }
  const a = Buffer.from(prevDigest, 'utf8');
  const b = Buffer.from(sopsPlaintextDigest(newPlain, opts), 'utf8');
  return a.length === b.length && timingSafeEqual(a, b) ? prevEncrypted : undefined;
}

/** encryptSecretSops() unless the previous rendering can be kept; `reused` tells which. */
export async function encryptSecretSopsIfChanged(
  prevEncrypted: unknown,
  secret: Plain,
  opts: SopsEncryptOptions & { digestKey: Uint8Array },
): Promise<{ object: Plain; reused: boolean }> {
  const prev = sopsReuseIfUnchanged(prevEncrypted, secret, { key: opts.digestKey, ageRecipients: opts.ageRecipients });
  if (prev) return { object: prev, reused: true };
  return { object: await encryptSecretSops(secret, opts), reused: false };
}
