// SSH keys for the PVC data path: generation (ed25519, OpenSSH formats), authorized_keys parsing,
// public-key authentication, and OpenSSH-style fingerprints for pinning and status.
import { createHash } from 'node:crypto';
import ssh2 from 'ssh2';
import type { ParsedKey, PublicKeyAuthContext } from 'ssh2';

const { utils } = ssh2;

export interface KeyPair {
  /** OpenSSH private key (what `ssh -i` reads). */
  privateKey: string;
  /** One authorized_keys / known_hosts line: "ssh-ed25519 AAAA… comment". */
  publicKey: string;
  /** "SHA256:…", as `ssh-keygen -lf` prints it. */
  fingerprint: string;
}

/** SHA256 fingerprint of a public key blob, like OpenSSH (unpadded base64). */
export function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

export function generateKeyPair(comment: string): KeyPair {
  // ssh2 (1.17) writes an ed25519 public key that starts with a zero byte as 31 bytes, which no
  // reader accepts (about 1 key in 256; seen as "Malformed OpenSSH public key"). Such a key is
  // drawn again: both halves must read back. Leaving out 1/256 of the keys costs no strength.
  for (let attempt = 0; attempt < 32; attempt++) {
    const { private: privateKey, public: publicKey } = utils.generateKeyPairSync('ed25519', { comment });
    const parsed = utils.parseKey(publicKey);
    if (parsed instanceof Error || utils.parseKey(privateKey) instanceof Error) continue;
    return { privateKey, publicKey: `${publicKey.trim()}\n`, fingerprint: fingerprintOf(parsed.getPublicSSH()) };
  }
  throw new Error('could not generate a readable ed25519 key');
}

/** The public half of a private key, as an authorized_keys line and a fingerprint. */
export function publicKeyOf(privateKey: string | Buffer): { publicKey: string; fingerprint: string } {
  const parsed = utils.parseKey(privateKey);
  if (parsed instanceof Error) throw new Error(`not an SSH private key: ${parsed.message}`);
  const blob = parsed.getPublicSSH();
  return { publicKey: `${parsed.type} ${blob.toString('base64')}\n`, fingerprint: fingerprintOf(blob) };
}

/** Keys of an authorized_keys file; options before the key type are not supported (refused). */
export function parseAuthorizedKeys(text: string): ParsedKey[] {
  const keys: ParsedKey[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const parsed = utils.parseKey(line);
    if (!(parsed instanceof Error)) keys.push(parsed);
  }
  return keys;
}

/**
 * Whether a public-key authentication attempt uses one of `keys`: the key must match and, when the
 * client signs (the second step), the signature must verify. Returns the key's fingerprint.
 */
export function authorize(ctx: PublicKeyAuthContext, keys: readonly ParsedKey[]): { ok: boolean; fingerprint: string } {
  const fingerprint = fingerprintOf(ctx.key.data);
  const key = keys.find((k) => k.type === ctx.key.algo && k.getPublicSSH().equals(ctx.key.data));
  if (!key) return { ok: false, fingerprint };
  if (ctx.signature && ctx.blob && key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) return { ok: false, fingerprint };
  return { ok: true, fingerprint };
}
