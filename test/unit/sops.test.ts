import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createDecipheriv, createHash } from 'node:crypto';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { parse as parseYaml } from 'yaml';
import {
  SOPS_DIGEST_ANNOTATION,
  SOPS_ENCRYPTED_REGEX,
  decryptSecretSops,
  encryptSecretSops,
  encryptSecretSopsIfChanged,
  sopsPlaintextDigest,
  sopsReuseIfUnchanged,
} from '../../src/core/secrets/sops.ts';
import { toYaml } from '../../src/core/yaml.ts';

const ENC = /^ENC\[AES256_GCM,data:([A-Za-z0-9+/=]+),iv:([A-Za-z0-9+/=]+),tag:([A-Za-z0-9+/=]+),type:(str|int|float|bool)\]$/;
const NOW = new Date('2025-03-04T05:06:07.891Z');

function seeded(seed: string): (n: number) => Uint8Array {
  let counter = 0;
  return (n) => {
    const out = new Uint8Array(n);
    for (let off = 0; off < n; off += 32) {
      const block = createHash('sha256').update(`${seed}:${counter++}`).digest();
      out.set(block.subarray(0, Math.min(32, n - off)), off);
    }
    return out;
  };
}

function secret(): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: 'db-credentials',
      namespace: 'shop',
      labels: { app: 'db', 'numeric-looking': '123', flag: 'true' },
      annotations: { 'example.com/rotated-at': '2024-01-01T00:00:00Z', 'example.com/octal': '0o17' },
    },
    type: 'Opaque',
    immutable: true,
    data: { password: Buffer.from('hunter2').toString('base64'), empty: '', '10': 'MTA=' },
    stringData: { 'config.yaml': 'user: admin\nport: 5432\n', 'ünïcode': 'värde ✓' },
  };
}

async function keypair(): Promise<{ identity: string; recipient: string }> {
  const identity = await generateX25519Identity();
  return { identity, recipient: await identityToRecipient(identity) };
}

function openEnc(value: string, key: Uint8Array, aad: string): string {
  const m = ENC.exec(value);
  assert.ok(m, `not an ENC value: ${value}`);
  const d = createDecipheriv('aes-256-gcm', key, Buffer.from(m[2]!, 'base64'));
  d.setAAD(Buffer.from(aad));
  d.setAuthTag(Buffer.from(m[3]!, 'base64'));
  return Buffer.concat([d.update(Buffer.from(m[1]!, 'base64')), d.final()]).toString('utf8');
}

void test('round trip: encrypt, render, parse, decrypt gives the original Secret back', async () => {
  const { identity, recipient } = await keypair();
  const plain = secret();
  const enc = await encryptSecretSops(plain, { ageRecipients: [recipient], now: NOW });
  assert.deepEqual(await decryptSecretSops(enc, identity), plain);
  const reparsed = parseYaml(toYaml(enc)) as Record<string, unknown>;
  assert.deepEqual(await decryptSecretSops(reparsed, identity), plain);
  assert.deepEqual(plain, secret(), 'input is not mutated');
});

void test('format: only data/stringData values are encrypted; sops metadata as sops writes it', async () => {
  const { recipient } = await keypair();
  const enc = await encryptSecretSops(secret(), { ageRecipients: [recipient], now: NOW });
  assert.deepEqual(enc.metadata, secret().metadata);
  assert.equal(enc.type, 'Opaque');
  assert.equal(enc.immutable, true);
  const data = enc.data as Record<string, string>;
  const stringData = enc.stringData as Record<string, string>;
  assert.deepEqual(Object.keys(data).sort(), Object.keys(secret().data as object).sort(), 'every key kept');
  assert.equal(data.empty, '', 'empty strings stay unencrypted like sops');
  for (const v of [data.password!, data['10']!, ...Object.values(stringData)]) {
    const m = ENC.exec(v);
    assert.ok(m, v);
    assert.equal(m[4], 'str');
    assert.equal(Buffer.from(m[2]!, 'base64').length, 32, '32-byte IV');
    assert.equal(Buffer.from(m[3]!, 'base64').length, 16, '16-byte tag');
  }
  const sops = enc.sops as Record<string, unknown>;
  assert.deepEqual(Object.keys(sops), ['age', 'lastmodified', 'mac', 'encrypted_regex', 'version']);
  assert.equal(sops.lastmodified, '2025-03-04T05:06:07Z');
  assert.equal(sops.encrypted_regex, SOPS_ENCRYPTED_REGEX);
  assert.match(sops.version as string, /^\d+\.\d+\.\d+$/);
  assert.match(sops.mac as string, ENC);
  const age = sops.age as { recipient: string; enc: string }[];
  assert.equal(age.length, 1);
  assert.equal(age[0]!.recipient, recipient);
  assert.match(age[0]!.enc, /^-----BEGIN AGE ENCRYPTED FILE-----\n([A-Za-z0-9+/=]{64}\n)*[A-Za-z0-9+/=]{1,64}\n-----END AGE ENCRYPTED FILE-----\n$/);
  assert.equal(Object.keys(enc).at(-1), 'sops');
});

void test('known answer: AAD is the key path plus ":", MAC is upper-case SHA-512 of all leaves keyed to lastmodified', async () => {
  const { recipient } = await keypair();
  const dataKey = new Uint8Array(32).fill(7);
  const enc = await encryptSecretSops(secret(), { ageRecipients: [recipient], now: NOW, dataKey });
  const data = enc.data as Record<string, string>;
  assert.equal(openEnc(data.password!, dataKey, 'data:password:'), Buffer.from('hunter2').toString('base64'));
  assert.equal(openEnc((enc.stringData as Record<string, string>)['ünïcode']!, dataKey, 'stringData:ünïcode:'), 'värde ✓');
  assert.throws(() => openEnc(data.password!, dataKey, 'data:other:'));
  // Leaves in the order toYaml writes them: apiVersion, kind, metadata (name, namespace, then
  // sorted), then the other keys sorted, at every level ("10" < "empty" < "password").
  const leaves = [
    'v1', 'Secret', 'db-credentials', 'shop', '0o17', '2024-01-01T00:00:00Z', 'db', 'true', '123',
    'MTA=', '', Buffer.from('hunter2').toString('base64'), 'True', 'user: admin\nport: 5432\n', 'värde ✓', 'Opaque',
  ];
  const expected = createHash('sha512').update(leaves.join(''), 'utf8').digest('hex').toUpperCase();
  const sops = enc.sops as Record<string, string>;
  assert.equal(openEnc(sops.mac!, dataKey, '2025-03-04T05:06:07Z'), expected);
});

void test('typed leaves: int, float and bool under data are encrypted with their sops types', async () => {
  const { identity, recipient } = await keypair();
  const dataKey = new Uint8Array(32).fill(1);
  const doc = { data: { n: 42, f: 1e-7, b: false, list: ['a', 2] }, note: null };
  const enc = await encryptSecretSops(doc, { ageRecipients: [recipient], now: NOW, dataKey });
  const d = enc.data as Record<string, unknown>;
  assert.match(d.n as string, /type:int\]$/);
  assert.match(d.f as string, /type:float\]$/);
  assert.match(d.b as string, /type:bool\]$/);
  assert.equal(openEnc(d.f as string, dataKey, 'data:f:'), '0.0000001');
  assert.equal(openEnc(d.b as string, dataKey, 'data:b:'), 'False');
  // list items keep the parent path
  assert.equal(openEnc((d.list as string[])[1]!, dataKey, 'data:list:'), '2');
  assert.equal(enc.note, null);
  assert.deepEqual(await decryptSecretSops(enc, identity), doc);
});

void test('determinism: injected data key, randomness and time give the same ciphertext', async () => {
  const { recipient } = await keypair();
  const opts = { ageRecipients: [recipient], now: NOW, dataKey: new Uint8Array(32).fill(9) };
  const a = await encryptSecretSops(secret(), { ...opts, randomBytes: seeded('x') });
  const b = await encryptSecretSops(secret(), { ...opts, randomBytes: seeded('x') });
  const c = await encryptSecretSops(secret(), { ...opts, randomBytes: seeded('y') });
  // age draws its own randomness for the stanza (not injectable), so compare without `enc`.
  const strip = (o: Record<string, unknown>) => {
    const s = o.sops as Record<string, unknown>;
    return { ...o, sops: { ...s, age: (s.age as { recipient: string }[]).map((e) => e.recipient) } };
  };
  assert.deepEqual(strip(a), strip(b));
  assert.notDeepEqual(strip(a), strip(c));
  const d = await encryptSecretSops(secret(), { ageRecipients: [recipient], now: NOW, randomBytes: seeded('x') });
  const e = await encryptSecretSops(secret(), { ageRecipients: [recipient], now: NOW, randomBytes: seeded('x') });
  assert.deepEqual(strip(d), strip(e), 'the data key comes from randomBytes too');
  const f = await encryptSecretSops(secret(), { ageRecipients: [recipient], now: NOW });
  const g = await encryptSecretSops(secret(), { ageRecipients: [recipient], now: NOW });
  assert.notEqual((f.data as Record<string, string>).password, (g.data as Record<string, string>).password);
});

void test('integrity: tampering with plaintext metadata or moving ciphertext is detected', async () => {
  const { identity, recipient } = await keypair();
  const enc = await encryptSecretSops(secret(), { ageRecipients: [recipient], now: NOW });
  const meta = enc.metadata as Record<string, Record<string, string>>;
  const tampered = { ...enc, metadata: { ...meta, labels: { ...meta.labels, app: 'evil' } } };
  await assert.rejects(decryptSecretSops(tampered, identity), /MAC mismatch/);
  const data = enc.data as Record<string, string>;
  const moved = { ...enc, data: { ...data, password: data['10']! } };
  await assert.rejects(decryptSecretSops(moved, identity));
  // The MAC covers the order of the file: swap two label lines of the written text.
  const text = toYaml(enc);
  assert.match(text, / {4}app: db\n {4}flag: "true"\n/);
  const reordered = text.replace('    app: db\n    flag: "true"\n', '    flag: "true"\n    app: db\n');
  await assert.rejects(decryptSecretSops(reordered, identity), /MAC mismatch/, 'the MAC covers order');
  assert.deepEqual(await decryptSecretSops(text, identity), secret(), 'the file as written verifies');
  const other = await keypair();
  await assert.rejects(decryptSecretSops(enc, other.identity), /data key/);
});

void test('several recipients: each identity can decrypt', async () => {
  const k1 = await keypair();
  const k2 = await keypair();
  const enc = await encryptSecretSops(secret(), { ageRecipients: [k1.recipient, k2.recipient, k1.recipient], now: NOW });
  assert.equal((enc.sops as { age: unknown[] }).age.length, 2, 'duplicates dropped');
  assert.deepEqual(await decryptSecretSops(enc, k1.identity), secret());
  assert.deepEqual(await decryptSecretSops(enc, `# keys.txt\n${k2.identity}\n`), secret());
});

void test('bad input is refused', async () => {
  const { recipient } = await keypair();
  const now = NOW;
  await assert.rejects(encryptSecretSops(secret(), { ageRecipients: [], now }), /at least one/);
  await assert.rejects(encryptSecretSops(secret(), { ageRecipients: ['ssh-ed25519 AAAA'], now }), /X25519/);
  await assert.rejects(encryptSecretSops(secret(), { ageRecipients: [`${recipient}x`], now }), /X25519/);
  await assert.rejects(encryptSecretSops({ ...secret(), sops: {} }, { ageRecipients: [recipient], now }), /sops/);
  await assert.rejects(
    encryptSecretSops(secret(), { ageRecipients: [recipient], now, dataKey: new Uint8Array(16) }),
    /32 bytes/,
  );
  await assert.rejects(encryptSecretSops({ data: { big: 2 ** 60 } }, { ageRecipients: [recipient], now }), /safe range/);
});

void test('digest: keyed, order-insensitive, sensitive to content, recipients and key', async () => {
  const k1 = await keypair();
  const k2 = await keypair();
  const key = new Uint8Array(32).fill(3);
  const opts = { key, ageRecipients: [k1.recipient] };
  const d = sopsPlaintextDigest(secret(), opts);
  assert.match(d, /^hmac-sha256-v2:[A-Za-z0-9_-]{43}$/);
  const s = secret();
  const reordered = { data: s.data, stringData: s.stringData, kind: s.kind, apiVersion: s.apiVersion, metadata: s.metadata, type: s.type, immutable: s.immutable };
  assert.equal(sopsPlaintextDigest(reordered, opts), d);
  const changed = { ...s, data: { ...(s.data as object), password: 'eA==' } };
  assert.notEqual(sopsPlaintextDigest(changed, opts), d);
  const relabeled = { ...s, metadata: { ...(s.metadata as object), labels: { app: 'db2' } } };
  assert.notEqual(sopsPlaintextDigest(relabeled, opts), d);
  assert.notEqual(sopsPlaintextDigest(s, { ...opts, ageRecipients: [k1.recipient, k2.recipient] }), d);
  assert.equal(sopsPlaintextDigest(s, { ...opts, ageRecipients: [k1.recipient, k1.recipient] }), d);
  assert.notEqual(sopsPlaintextDigest(s, { ...opts, key: new Uint8Array(32).fill(4) }), d);
  assert.throws(() => sopsPlaintextDigest(s, { ...opts, key: new Uint8Array(16) }), /32 bytes/);
  const plainSha = createHash('sha256').update(JSON.stringify(s)).digest('base64url');
  assert.ok(!d.includes(plainSha));
});

void test('unchanged detection: the previous rendering is reused only when nothing it depends on changed', async () => {
  const k1 = await keypair();
  const k2 = await keypair();
  const digestKey = new Uint8Array(32).fill(5);
  const opts = { ageRecipients: [k1.recipient], now: NOW, digestKey };
  const first = await encryptSecretSopsIfChanged(undefined, secret(), opts);
  assert.equal(first.reused, false);
  const ann = (first.object.metadata as { annotations: Record<string, string> }).annotations;
  assert.equal(ann[SOPS_DIGEST_ANNOTATION], sopsPlaintextDigest(secret(), { key: digestKey, ageRecipients: [k1.recipient] }));
  // The annotation is part of the MAC-covered document, and is dropped again on decryption input.
  const dec = await decryptSecretSops(first.object, k1.identity);
  assert.equal((dec.metadata as { annotations: Record<string, string> }).annotations[SOPS_DIGEST_ANNOTATION], ann[SOPS_DIGEST_ANNOTATION]);

  // Same plaintext, even after a YAML round trip of the committed file: reused as is.
  const committed = parseYaml(toYaml(first.object)) as Record<string, unknown>;
  const again = await encryptSecretSopsIfChanged(committed, secret(), { ...opts, now: new Date() });
  assert.equal(again.reused, true);
  assert.equal(again.object, committed);
  // A plaintext that carries an old digest annotation is still "unchanged".
  assert.equal(sopsReuseIfUnchanged(committed, dec, { key: digestKey, ageRecipients: [k1.recipient] }), committed);

  const changed = { ...secret(), data: { password: 'bmV3' } };
  assert.equal((await encryptSecretSopsIfChanged(committed, changed, opts)).reused, false);
  assert.equal((await encryptSecretSopsIfChanged(committed, secret(), { ...opts, ageRecipients: [k1.recipient, k2.recipient] })).reused, false);
  assert.equal((await encryptSecretSopsIfChanged(committed, secret(), { ...opts, digestKey: new Uint8Array(32).fill(6) })).reused, false);
  const noAnnotation = await encryptSecretSops(secret(), { ageRecipients: [k1.recipient], now: NOW });
  assert.equal(sopsReuseIfUnchanged(noAnnotation, secret(), { key: digestKey, ageRecipients: [k1.recipient] }), undefined);
  assert.equal(sopsReuseIfUnchanged({ kind: 'Secret' }, secret(), { key: digestKey, ageRecipients: [k1.recipient] }), undefined);
});

void test('the MAC follows the written order, also for keys that look like integers ("9" before "10" in JavaScript)', async () => {
  const { identity, recipient } = await keypair();
  const doc = { ...secret(), data: { '9': 'OQ==', '10': 'MTA=', b: 'Yg==', '1a': 'eA==' } };
  assert.deepEqual(Object.keys(doc.data), ['9', '10', 'b', '1a'], 'JavaScript puts integer-like keys first');
  const text = toYaml(await encryptSecretSops(doc, { ageRecipients: [recipient], now: NOW }));
  assert.ok(text.indexOf('"10":') < text.indexOf('"9":'), 'the file has them in string order');
  assert.deepEqual(await decryptSecretSops(text, identity), doc);
});

void test('a file from before the MAC order fix (digest scheme v1) is encrypted again, not reused', async () => {
  const k1 = await keypair();
  const digestKey = new Uint8Array(32).fill(5);
  const opts = { ageRecipients: [k1.recipient], now: NOW, digestKey };
  const current = (await encryptSecretSopsIfChanged(undefined, secret(), opts)).object;
  const ann = (current.metadata as { annotations: Record<string, string> }).annotations;
  const old = { ...current, metadata: { ...(current.metadata as object), annotations: { ...ann, [SOPS_DIGEST_ANNOTATION]: ann[SOPS_DIGEST_ANNOTATION]!.replace('-v2:', '-v1:') } } };
  assert.equal((await encryptSecretSopsIfChanged(old, secret(), opts)).reused, false);
  assert.equal((await encryptSecretSopsIfChanged(current, secret(), opts)).reused, true);
});

void test('a key named "__proto__" (valid in a Secret) is kept, not turned into a prototype', async () => {
  const { identity, recipient } = await keypair();
  const doc = JSON.parse('{"apiVersion":"v1","kind":"Secret","metadata":{"name":"p"},"data":{"__proto__":"eA==","a":"eQ=="}}') as Record<string, unknown>;
  const text = toYaml(await encryptSecretSops(doc, { ageRecipients: [recipient], now: NOW }));
  assert.match(text, /__proto__: "ENC\[/);
  const back = await decryptSecretSops(text, identity);
  assert.deepEqual(Object.keys(back.data as object), ['__proto__', 'a']);
  assert.equal(JSON.stringify(back), JSON.stringify(doc));
});
