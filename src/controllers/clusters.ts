// Clients for the clusters a Replication names. A RemoteCluster's client is built from its
// kubeconfig Secret once and cached; it is rebuilt when the Secret's resourceVersion changes.
// An empty sourceCluster means the cluster the controller runs in.
import type { KubeClientOptions } from '../adapters/kube/client.ts';
import { KubeApiError, KubeClient } from '../adapters/kube/client.ts';
import type { RemoteCluster } from '../api/v1alpha1/index.ts';
import type { KubeObject } from '../core/types.ts';

export class ClusterError extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

interface Entry {
  secretVersion: string;
  client: KubeClient;
}

export class ClusterClients {
  private readonly cache = new Map<string, Entry>();

  constructor(
    readonly local: KubeClient,
    /** Request mechanics of the clients built here. */
    private readonly options?: KubeClientOptions,
  ) {}

  /** Reads the RemoteCluster's kubeconfig Secret and returns a (cached) client for it. */
  async forRemoteCluster(rc: RemoteCluster): Promise<KubeClient> {
    const ns = rc.metadata.namespace ?? 'default';
    const ref = rc.spec.kubeconfigSecretRef;
    const keyName = ref.key ?? 'kubeconfig';
    let secret: KubeObject & { data?: Record<string, string> };
    try {
      secret = await this.local.get(`/api/v1/namespaces/${encodeURIComponent(ns)}/secrets/${encodeURIComponent(ref.name)}`);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) {
        throw new ClusterError('KubeconfigSecretNotFound', `Secret ${ns}/${ref.name} (spec.kubeconfigSecretRef) does not exist; create it with: kubectl -n ${ns} create secret generic ${ref.name} --from-file=${keyName}=<path>`);
      }
      throw err;
    }
    const cacheKey = `${ns}/${rc.metadata.name}`;
    const version = `${ref.name}/${keyName}/${String(secret.metadata.resourceVersion)}`;
    const hit = this.cache.get(cacheKey);
    if (hit && hit.secretVersion === version) return hit.client;
    const data = secret.data?.[keyName];
    if (!data) {
      throw new ClusterError('KubeconfigKeyNotFound', `Secret ${ns}/${ref.name} has no key "${keyName}" (keys: ${Object.keys(secret.data ?? {}).join(', ') || 'none'}); set spec.kubeconfigSecretRef.key`);
    }
    let client: KubeClient;
    try {
      client = await KubeClient.fromString(Buffer.from(data, 'base64').toString('utf8'), undefined, this.options, `RemoteCluster ${ns}/${rc.metadata.name}, kubeconfig Secret ${ns}/${ref.name} key ${keyName}`);
    } catch (err) {
      throw new ClusterError('InvalidKubeconfig', `the kubeconfig in Secret ${ns}/${ref.name} key "${keyName}" cannot be used: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.cache.set(cacheKey, { secretVersion: version, client });
    return client;
  }

  forget(namespace: string, name: string): void {
    this.cache.delete(`${namespace}/${name}`);
  }
}
