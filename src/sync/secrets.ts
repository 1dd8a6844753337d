// Secrets in mode SOPS: encrypted for the Replication's age recipients. Encryption is randomized,
// so a Secret whose plaintext did not change keeps its previous file (a keyed digest in the file
// tells, see core/secrets/sops.ts); otherwise every sync would commit new ciphertext.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encryptSecretSopsIfChanged } from '../core/secrets/sops.ts';
import type { KubeObject } from '../core/types.ts';
import type { SecretSealer } from './engine.ts';

export function sopsSealer(ageRecipients: string[], digestKey: Uint8Array, now: () => Date = () => new Date()): SecretSealer {
  return (secrets, previous) =>
    Promise.all(
      secrets.map(async (s) => {
        // The MAC follows the order toYaml writes the file in (see core/secrets/sops.ts).
        const { object } = await encryptSecretSopsIfChanged(previous(s), s, { ageRecipients, now: now(), digestKey });
        return object as KubeObject;
      }),
    );
}

/**
 * The CLI's digest key: DR_SYNCER_SOPS_DIGEST_KEY (base64), or a key created once in the user's
 * config folder. (The controller keeps one per Replication in a Kubernetes Secret.)
 */
export async function cliDigestKey(): Promise<Uint8Array> {
  const env = process.env.DR_SYNCER_SOPS_DIGEST_KEY;
  if (env) {
    const key = Buffer.from(env, 'base64');
    if (key.length < 32) throw new Error('DR_SYNCER_SOPS_DIGEST_KEY must be at least 32 bytes, base64-encoded');
    return key;
  }
  const dir = path.join(process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config'), 'dr-syncer');
  const file = path.join(dir, 'sops-digest.key');
  try {
    return Buffer.from((await fs.promises.readFile(file, 'utf8')).trim(), 'base64');
  } catch {
    await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
    const key = randomBytes(32);
    await fs.promises.writeFile(file, key.toString('base64') + '\n', { mode: 0o600, flag: 'wx' }).catch(() => undefined);
    return Buffer.from((await fs.promises.readFile(file, 'utf8')).trim(), 'base64');
  }
}
