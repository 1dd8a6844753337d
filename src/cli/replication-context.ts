// What the Replication commands (diff, failover, failback, status) need about Replications in
// the controller's cluster: the object, its RemoteClusters, clients for the clusters they name
// (through their kubeconfig Secrets, as the controller reaches them) and the DR repository
// (credentials from the Secret the controller uses). Heavy modules are imported on first use,
// so the commands' --help stays fast.
import os from 'node:os';
import path from 'node:path';
import type { KubeClient } from '../adapters/kube/client.ts';
import type { GitRepo } from '../adapters/git/repo.ts';
import type { RemoteCluster, Replication } from '../api/v1alpha1/index.ts';
import type { GitTarget } from '../sync/spec.ts';
import { errorMessage as message } from '../util/errors.ts';

/** A failure with the exit code the command returns: 2 for input the user must fix, 1 otherwise. */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2,
  ) {
    super(message);
  }
}

export interface ClusterOptions {
  namespace: string;
  kubeconfig?: string;
  context?: string;
}

/** The options every Replication command shares, for parseArgs and --help. */
export const CLUSTER_OPTIONS = {
  namespace: { type: 'string', short: 'n', default: 'dr-syncer' },
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
} as const;

export const CLUSTER_OPTIONS_HELP = `  -n, --namespace <ns>     namespace of the Replications and RemoteClusters (default dr-syncer)
      --kubeconfig <path>  the cluster the controller runs in (default: $KUBECONFIG or ~/.kube/config)
      --context <name>     context of that kubeconfig (default: its current context)`;

export function defaultKubeconfig(): string {
  return process.env.KUBECONFIG?.split(path.delimiter)[0] || path.join(os.homedir(), '.kube', 'config');
}

const API = '/apis/dr-syncer.io/v1alpha1';

export class ControllerCluster {
  private constructor(
    readonly client: KubeClient,
    readonly namespace: string,
  ) {}

  static async connect(o: ClusterOptions): Promise<ControllerCluster> {
    const { KubeClient, ONE_SHOT_KUBE_API } = await import('../adapters/kube/client.ts');
    const file = o.kubeconfig ?? defaultKubeconfig();
    try {
      return new ControllerCluster(await KubeClient.fromFile(file, o.context, ONE_SHOT_KUBE_API), o.namespace);
    } catch (err) {
      throw new CommandError(`cannot use kubeconfig ${file}: ${message(err)}`, 2);
    }
  }

  replicationPath(name?: string): string {
    return `${API}/namespaces/${encodeURIComponent(this.namespace)}/replications${name ? `/${encodeURIComponent(name)}` : ''}`;
  }

  async replications(): Promise<Replication[]> {
    try {
      const list = await this.client.list(this.replicationPath());
      return (list.items as unknown as Replication[]).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    } catch (err) {
      throw new CommandError(`listing Replications in namespace ${this.namespace} of ${this.client.describe()} failed: ${message(err)}`, 1);
    }
  }

  async replication(name: string): Promise<Replication> {
    const { KubeApiError } = await import('../adapters/kube/client.ts');
    try {
      return await this.client.get<Replication>(this.replicationPath(name));
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) {
        throw new CommandError(`Replication ${this.namespace}/${name} does not exist in ${this.client.describe()} (kubectl -n ${this.namespace} get replications lists them; -n sets the namespace)`, 2);
      }
      throw new CommandError(`reading Replication ${this.namespace}/${name} from ${this.client.describe()} failed: ${message(err)}`, 1);
    }
  }

  async remoteCluster(name: string, field: string): Promise<RemoteCluster> {
    const { KubeApiError } = await import('../adapters/kube/client.ts');
    try {
      return await this.client.get<RemoteCluster>(`${API}/namespaces/${encodeURIComponent(this.namespace)}/remoteclusters/${encodeURIComponent(name)}`);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) throw new CommandError(`${field}: RemoteCluster ${this.namespace}/${name} does not exist`, 2);
      throw new CommandError(`reading RemoteCluster ${this.namespace}/${name} failed: ${message(err)}`, 1);
    }
  }

  /** A client for a RemoteCluster, from its kubeconfig Secret; a Secret problem is the user's to fix (exit 2). */
  async clusterClient(rc: RemoteCluster): Promise<KubeClient> {
    const [{ ClusterClients, ClusterError }, { ONE_SHOT_KUBE_API }] = await Promise.all([import('../controllers/clusters.ts'), import('../adapters/kube/client.ts')]);
    try {
      return await new ClusterClients(this.client, ONE_SHOT_KUBE_API).forRemoteCluster(rc);
    } catch (err) {
      if (err instanceof ClusterError) throw new CommandError(`RemoteCluster ${this.namespace}/${rc.metadata.name}: ${err.message}`, 2);
      throw new CommandError(`RemoteCluster ${this.namespace}/${rc.metadata.name}: reading its kubeconfig Secret failed: ${message(err)}`, 1);
    }
  }

  /** Everything about one Replication. */
  async context(name: string): Promise<ReplicationContext> {
    const rep = await this.replication(name);
    const destRc = rep.spec.destinationCluster ? await this.remoteCluster(rep.spec.destinationCluster, 'spec.destinationCluster') : undefined;
    const { gitTarget } = await import('../sync/spec.ts');
    let target: GitTarget;
    try {
      target = gitTarget(rep, destRc);
    } catch (err) {
      throw new CommandError(message(err), 2);
    }
    return new ReplicationContext(this, rep, target, destRc);
  }
}

export class ReplicationContext {
  constructor(
    readonly cluster: ControllerCluster,
    readonly rep: Replication,
    readonly target: GitTarget,
    readonly destination?: RemoteCluster,
  ) {}

  get key(): string {
    return `${this.rep.metadata.namespace ?? this.cluster.namespace}/${this.rep.metadata.name}`;
  }

  /** The source cluster: its RemoteCluster's kubeconfig, or the controller's own cluster. */
  async source(): Promise<KubeClient> {
    const name = this.rep.spec.sourceCluster;
    if (!name) return this.cluster.client;
    return this.cluster.clusterClient(await this.cluster.remoteCluster(name, 'spec.sourceCluster'));
  }

  /** The DR cluster, when the Replication names a destinationCluster. */
  async dr(): Promise<KubeClient | undefined> {
    return this.destination ? this.cluster.clusterClient(this.destination) : undefined;
  }

  /** The DR repository, with the credentials the controller uses. */
  async repo(cacheDir = path.join(os.homedir(), '.cache', 'dr-syncer', 'git')): Promise<GitRepo> {
    const [{ GitRepo }, { KubeApiError }, { gitAuthFromSecretData }] = await Promise.all([import('../adapters/git/repo.ts'), import('../adapters/kube/client.ts'), import('../sync/spec.ts')]);
    const ns = this.cluster.namespace;
    let auth;
    const secretName = this.target.credentialsSecret;
    if (secretName) {
      let data: Record<string, string> | undefined;
      try {
        data = (await this.cluster.client.get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${encodeURIComponent(ns)}/secrets/${encodeURIComponent(secretName)}`)).data;
      } catch (err) {
        if (err instanceof KubeApiError && err.status === 404) throw new CommandError(`Secret ${ns}/${secretName} (the Git credentials of Replication ${this.key}) does not exist`, 2);
        throw new CommandError(`reading Secret ${ns}/${secretName} (the Git credentials of Replication ${this.key}) failed: ${message(err)}`, 1);
      }
      auth = gitAuthFromSecretData(data);
      if (!auth) throw new CommandError(`Secret ${ns}/${secretName} needs the keys username and password, or token`, 2);
    }
    return new GitRepo({ url: this.target.url, branch: this.target.branch, cacheDir, auth });
  }
}
