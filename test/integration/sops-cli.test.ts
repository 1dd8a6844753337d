// Our SOPS output against the real `sops` CLI (getsops/sops v3, built by test/env/build-sops.sh):
// sops must decrypt it and verify its MAC, and we must decrypt what sops writes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import fc from 'fast-check';
import { parse as parseYaml } from 'yaml';
import { decryptSecretSops, encryptSecretSops } from '../../src/core/secrets/sops.ts';
import { toYaml } from '../../src/core/yaml.ts';
import { secretObject } from '../fixtures/arbitraries.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, cwd = ROOT): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
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
    data: {
      password: Buffer.from('hunter2').toString('base64'),
      '10': 'MTA=',
      empty: '',
      'tls.key': Buffer.from('-----BEGIN KEY-----\n' + 'A'.repeat(300) + '\n-----END KEY-----\n').toString('base64'),
    },
    stringData: { 'config.yaml': 'user: admin\nport: 5432\n', 'ünïcode': 'värde ✓', quoted: 'a "b" \\ c' },
  };
}

void describe('real sops CLI', () => {
  let sops: string;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let identity: string;
  let recipient: string;
  let identity2: string;
  let recipient2: string;

  before(async () => {
    const t0 = Date.now();
    const built = await run('bash', [path.join(ROOT, 'test/env/build-sops.sh')]);
    assert.equal(built.code, 0, `build-sops.sh failed:\n${built.stderr}`);
    sops = built.stdout.trim().split('\n').at(-1)!;
    console.log(`# ${sops} ready in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    dir = await mkdtemp(path.join(os.tmpdir(), 'drs-sops-'));
    identity = await generateX25519Identity();
    recipient = await identityToRecipient(identity);
    identity2 = await generateX25519Identity();
    recipient2 = await identityToRecipient(identity2);
    await writeFile(path.join(dir, 'keys.txt'), `# test key\n${identity}\n`, { mode: 0o600 });
    await writeFile(path.join(dir, 'keys2.txt'), `${identity2}\n`, { mode: 0o600 });
    // Hermetic: no ~/.ssh keys, no user config, no update check.
    env = {
      PATH: process.env.PATH,
      HOME: dir,
      XDG_CONFIG_HOME: path.join(dir, 'config'),
      SOPS_AGE_KEY_FILE: path.join(dir, 'keys.txt'),
      SOPS_DISABLE_VERSION_CHECK: 'true',
    };
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function sopsDecrypt(file: string, keyFile = 'keys.txt'): Promise<Run> {
    return run(sops, ['--decrypt', '--input-type', 'yaml', '--output-type', 'yaml', file], {
      ...env,
      SOPS_AGE_KEY_FILE: path.join(dir, keyFile),
    }, dir);
  }

  void test('sops --decrypt reads our output, MAC verified, plaintext equal to the Secret', async () => {
    const enc = await encryptSecretSops(secret(), { ageRecipients: [recipient], now: new Date() });
    const file = path.join(dir, 'secret.enc.yaml');
    await writeFile(file, toYaml(enc));
    const r = await sopsDecrypt(file);
    assert.equal(r.code, 0, `sops failed: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /MAC mismatch/i);
    assert.deepEqual(parseYaml(r.stdout), secret());
  });

  void test('property: sops decrypts random Secrets (keys such as "9" and "10", tricky strings) with the MAC verified', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(secretObject, async (s) => {
        const file = path.join(dir, `random-${n++}.enc.yaml`);
        await writeFile(file, toYaml(await encryptSecretSops(s, { ageRecipients: [recipient], now: new Date() })));
        // JSON output: sops' own YAML writer loses some values ("\t\n" comes out as null), its
        // JSON writer does not; Flux decrypts in memory and applies JSON as well.
        const r = await run(sops, ['--decrypt', '--input-type', 'yaml', '--output-type', 'json', file], env, dir);
        assert.equal(r.code, 0, `sops failed: ${r.stderr}\n${toYaml(s)}`);
        assert.deepEqual(JSON.parse(r.stdout), JSON.parse(JSON.stringify(s)));
      }),
      { numRuns: 60 },
    );
    // The case that broke: "9" and "10" are written in string order, JavaScript holds them the other way.
    const file = path.join(dir, 'numeric.enc.yaml');
    const numeric = { ...secret(), data: { '9': 'OQ==', '10': 'MTA=' } };
    await writeFile(file, toYaml(await encryptSecretSops(numeric, { ageRecipients: [recipient], now: new Date() })));
    const r = await sopsDecrypt(file);
    assert.equal(r.code, 0, `sops failed: ${r.stderr}`);
  });

  void test('several recipients: sops decrypts with either key', async () => {
    const enc = await encryptSecretSops(secret(), { ageRecipients: [recipient, recipient2], now: new Date() });
    const file = path.join(dir, 'two.enc.yaml');
    await writeFile(file, toYaml(enc));
    for (const keys of ['keys.txt', 'keys2.txt']) {
      const r = await sopsDecrypt(file, keys);
      assert.equal(r.code, 0, `sops failed with ${keys}: ${r.stderr}`);
      assert.deepEqual(parseYaml(r.stdout), secret());
    }
  });

  void test('the Flux path: JSON re-serialized with sorted keys, decrypted by the JSON store without MAC check', async () => {
    // kustomize-controller marshals the resource to JSON (Go sorts map keys) and decrypts it with
    // sops' JSON store, MAC check off by default since kustomize injects labels.
    const sortDeep = (v: unknown): unknown =>
      Array.isArray(v)
        ? v.map(sortDeep)
        : v !== null && typeof v === 'object'
          ? Object.fromEntries(
              Object.keys(v)
                .sort()
                .map((k) => [k, sortDeep((v as Record<string, unknown>)[k])]),
            )
          : v;
    const enc = await encryptSecretSops(secret(), { ageRecipients: [recipient], now: new Date() });
    const file = path.join(dir, 'flux.json');
    await writeFile(file, JSON.stringify(sortDeep(enc)));
    const r = await run(sops, ['--decrypt', '--ignore-mac', '--input-type', 'json', '--output-type', 'json', file], env, dir);
    assert.equal(r.code, 0, `sops failed: ${r.stderr}`);
    assert.deepEqual(JSON.parse(r.stdout), secret());
  });

  void test('sops reports a MAC mismatch when unencrypted metadata is tampered with', async () => {
    const enc = await encryptSecretSops(secret(), { ageRecipients: [recipient], now: new Date() });
    const file = path.join(dir, 'tampered.enc.yaml');
    await writeFile(file, toYaml(enc).replace('app: db', 'app: evil'));
    const r = await sopsDecrypt(file);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /MAC mismatch/);
  });

  void test('we decrypt what sops encrypts (same encrypted_regex convention)', async () => {
    const plainFile = path.join(dir, 'plain.yaml');
    await writeFile(plainFile, toYaml(secret()));
    const r = await run(
      sops,
      ['--encrypt', '--age', recipient, '--encrypted-regex', '^(data|stringData)$', '--input-type', 'yaml', '--output-type', 'yaml', plainFile],
      env,
      dir,
    );
    assert.equal(r.code, 0, `sops --encrypt failed: ${r.stderr}`);
    const theirs = parseYaml(r.stdout) as Record<string, unknown>;
    assert.match(String((theirs.data as Record<string, unknown>).password), /^ENC\[AES256_GCM,/);
    assert.deepEqual(await decryptSecretSops(r.stdout, identity), secret());
    assert.equal(await readFile(plainFile, 'utf8'), toYaml(secret()), 'sops did not touch the input');
  });
});
