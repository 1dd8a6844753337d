// SSH key generation for the PVC data path: every key the controller makes must be readable by
// OpenSSH and by ssh2. ssh2 alone writes about 1 ed25519 key in 256 wrongly (a public key that
// starts with a zero byte comes out 31 bytes long); 2,000 keys make missing that unlikely
// (the chance that none of them hits the case is under 0.1 %).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { generateKeyPair, publicKeyOf } from '../../src/agent/keys.ts';

void describe('generateKeyPair', () => {
  it('2,000 keys: each reads back, its public key is 32 bytes, the private key yields the same public key', () => {
    for (let i = 0; i < 2000; i++) {
      const k = generateKeyPair(`key-${i}`);
      const blob = Buffer.from(k.publicKey.split(' ')[1]!, 'base64');
      assert.equal(blob.readUInt32BE(15), 32, `key ${i}: ${k.publicKey}`); // after "ssh-ed25519" (4 + 11 bytes)
      const again = publicKeyOf(k.privateKey);
      assert.equal(again.fingerprint, k.fingerprint);
    }
  });

  it('OpenSSH reads the private key and derives the same public key', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-keys-'));
    try {
      const k = generateKeyPair('openssh-check');
      fs.writeFileSync(path.join(dir, 'id'), k.privateKey, { mode: 0o600 });
      const derived = execFileSync('ssh-keygen', ['-y', '-f', path.join(dir, 'id')], { encoding: 'utf8' });
      assert.equal(derived.split(' ').slice(0, 2).join(' '), k.publicKey.split(' ').slice(0, 2).join(' '));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
