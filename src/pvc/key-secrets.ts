// The controller's SSH keys for the PVC data path, each kept in a Secret of the controller's
// cluster with its fingerprint and creation time as annotations:
//   - per source RemoteCluster: the agents' host key, and the DR -> agent client key;
//   - per Replication: the key that opens that Replication's rsync endpoints (and no other's).
// A key older than the rotation interval is replaced in place; what was already authenticated
// with the old one (a running transfer) goes on, new connections need the new one.
import type { KubeClient } from '../adapters/kube/client.ts';
import { KubeApiError } from '../adapters/kube/client.ts';
import type { KeyPair } from '../agent/keys.ts';
import { generateKeyPair, publicKeyOf } from '../agent/keys.ts';
import { CREATED_ANNOTATION, FINGERPRINT_ANNOTATION, MANAGED_BY } from './manifests.ts';

export interface StoredKey {
  key: KeyPair;
  createdAt: Date;
  /** True when this call generated the key (new, or rotated). */
  generated: boolean;
}

interface SecretObject {
  metadata: { name: string; resourceVersion?: string; annotations?: Record<string, string> };
  data?: Record<string, string>;
}

function readKey(s: SecretObject): StoredKey | undefined {
  const priv = s.data?.private_key;
  if (!priv) return undefined;
  try {
    const privateKey = Buffer.from(priv, 'base64').toString('utf8');
    const { publicKey, fingerprint } = publicKeyOf(privateKey);
    const created = Date.parse(s.metadata.annotations?.[CREATED_ANNOTATION] ?? '');
    return { key: { privateKey, publicKey, fingerprint }, createdAt: new Date(Number.isNaN(created) ? 0 : created), generated: false };
  } catch {
    return undefined; // not a key: replaced below
  }
}

/** An object in the same namespace whose deletion removes the key (the Replication it belongs to). */
export interface KeyOwner {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
}

function secretBody(namespace: string, name: string, comment: string, key: KeyPair, now: Date, resourceVersion?: string, owner?: KeyOwner): unknown {
  return {
    apiVersion: 'v1', kind: 'Secret', type: 'Opaque',
    metadata: {
      name, namespace, labels: { ...MANAGED_BY },
      ...(owner ? { ownerReferences: [{ ...owner, blockOwnerDeletion: false }] } : {}),
      annotations: { [FINGERPRINT_ANNOTATION]: key.fingerprint, [CREATED_ANNOTATION]: now.toISOString(), 'dr-syncer.io/key-purpose': comment },
      ...(resourceVersion ? { resourceVersion } : {}),
    },
    data: { private_key: Buffer.from(key.privateKey).toString('base64'), public_key: Buffer.from(key.publicKey).toString('base64') },
  };
}

/**
 * The key in Secret namespace/name: created when missing or unreadable, replaced when older than
 * rotateAfterMs. Concurrent callers (two replicas, two reconciles) agree through the
 * resourceVersion: the loser reads the winner's key.
 */
export async function ensureKey(client: KubeClient, namespace: string, name: string, comment: string, rotateAfterMs: number | undefined, now: Date, owner?: KeyOwner): Promise<StoredKey> {
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`;
  for (let attempt = 0; attempt < 5; attempt++) {
    let existing: SecretObject | undefined;
    try {
      existing = await client.get<SecretObject>(`${path}/${encodeURIComponent(name)}`);
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 404)) throw err;
    }
    const stored = existing && readKey(existing);
    if (stored && (rotateAfterMs === undefined || now.getTime() - stored.createdAt.getTime() < rotateAfterMs)) return stored;
    const key = generateKeyPair(comment);
    try {
      if (existing) await client.request('PUT', `${path}/${encodeURIComponent(name)}`, secretBody(namespace, name, comment, key, now, existing.metadata.resourceVersion, owner));
      else await client.request('POST', path, secretBody(namespace, name, comment, key, now, undefined, owner));
      return { key, createdAt: now, generated: true };
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 409) continue; // someone else wrote it: read theirs
      throw err;
    }
  }
  throw new Error(`Secret ${namespace}/${name}: could not store the SSH key (conflicting writers)`);
}
