// From a Replication (as the API defines it) to the engine's SyncSpec and the Git target. The
// CLI and the controller share this, so a one-shot sync and the controller write the same bytes.
import type { RemoteCluster, Replication } from '../api/v1alpha1/index.ts';
import type { GitAuth } from '../adapters/git/repo.ts';
import type { LabelSelector } from '../core/types.ts';
import type { SyncSpec } from './engine.ts';

export interface GitTarget {
  url: string;
  branch: string;
  path: string;
  /** Name of the Secret (in the Replication's namespace) with username/password or token. */
  credentialsSecret?: string;
}

/** The repository a Replication writes to: its own git settings over the destination RemoteCluster's. */
export function gitTarget(rep: Replication, destination?: RemoteCluster, urlOverride?: string): GitTarget {
  const own = rep.spec.git ?? {};
  const dest = destination?.spec.git;
  const url = urlOverride ?? own.url ?? dest?.url;
  if (!url) {
    throw new Error(
      `Replication ${rep.metadata.namespace ?? ''}/${rep.metadata.name}: no Git repository: set spec.git.url, ` +
        'or spec.destinationCluster naming a RemoteCluster with spec.git.url',
    );
  }
  return {
    url,
    branch: own.branch ?? dest?.branch ?? 'main',
    path: own.path ?? dest?.path ?? '',
    credentialsSecret: own.credentialsSecretRef?.name ?? (own.url ? undefined : dest?.credentialsSecretRef?.name),
  };
}

export function syncSpecFor(rep: Replication, sourceCluster: string, target: GitTarget): SyncSpec {
  const s = rep.spec;
  return {
    replication: `${rep.metadata.namespace ?? 'default'}/${rep.metadata.name}`,
    sourceCluster,
    sourceNamespace: s.sourceNamespace,
    destinationNamespace: s.destinationNamespace,
    namespaceSelector: s.namespaceSelector
      ? { labelSelector: s.namespaceSelector.labelSelector as LabelSelector | undefined, destinationSuffix: s.namespaceSelector.destinationSuffix }
      : undefined,
    resourceTypes: s.resourceTypes,
    excludeResourceTypes: s.excludeResourceTypes,
    plan: {
      labelSelector: s.labelSelector as LabelSelector | undefined,
      scaleToZero: s.scaleToZero ?? true,
      pvc: {
        storageClassMappings: s.pvc?.storageClassMappings,
        accessModeMappings: s.pvc?.accessModeMappings,
        preserveVolumeAttributes: s.pvc?.preserveVolumeAttributes ?? false,
      },
      transforms: s.transforms,
      secretsMode: s.secrets?.mode ?? 'Omit',
    },
    git: {
      path: target.path,
      author: { name: s.git?.author?.name ?? 'dr-syncer', email: s.git?.author?.email ?? 'dr-syncer@localhost' },
      prune: s.git?.prune ?? true,
    },
  };
}

/** The Git credentials in a credentials Secret's data (keys username and password, or token), or
 * undefined when it holds neither a password nor a token. One reading for the controller and CLI. */
export function gitAuthFromSecretData(data: Record<string, string> | undefined): GitAuth | undefined {
  const get = (k: string) => (data?.[k] ? Buffer.from(data[k], 'base64').toString('utf8') : undefined);
  const auth = { username: get('username'), password: get('password'), token: get('token') };
  return auth.password || auth.token ? auth : undefined;
}
