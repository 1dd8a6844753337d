// RemoteCluster: one cluster the controller can reach (kubeconfig in a Secret), the GitOps
// repository of that cluster, and the PVC-sync agent settings for it.
import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import {
  Conditions,
  Duration,
  GitRepoSpec,
  ObjectMeta,
  NamespaceName,
  ObjectName,
  PatternString,
  QuantityMap,
  SECRET_KEY_PATTERN,
  StringEnum,
  StringMap,
  Timestamp,
} from './common.ts';

export const KubeconfigSecretRef = Type.Object(
  {
    name: ObjectName('Name of the Secret that holds the kubeconfig, in the same namespace as the RemoteCluster.'),
    key: Type.Optional(
      PatternString(SECRET_KEY_PATTERN, 'must be a Secret data key: letters, digits, "-", "_" and "."', {
        description: 'Key in the Secret whose value is the kubeconfig file.',
        default: 'kubeconfig',
        maxLength: 253,
      }),
    ),
  },
  {
    description:
      'Secret in the same namespace with a kubeconfig for the cluster. The kubeconfig\'s current context is used; ' +
      'it must carry its credentials inline (token or client certificate), not exec plugins.',
  },
);

export const Toleration = Type.Object(
  {
    key: Type.Optional(Type.String({ description: 'Taint key the toleration applies to. Empty with operator Exists matches all taints.', maxLength: 317 })),
    operator: Type.Optional(StringEnum(['Exists', 'Equal'], { description: 'Exists or Equal (default Equal).' })),
    value: Type.Optional(Type.String({ description: 'Taint value to match when operator is Equal.', maxLength: 63 })),
    effect: Type.Optional(
      StringEnum(['NoSchedule', 'PreferNoSchedule', 'NoExecute'], {
        description: 'Taint effect to match: NoSchedule, PreferNoSchedule or NoExecute. Empty matches all effects.',
      }),
    ),
    tolerationSeconds: Type.Optional(
      Type.Integer({
        description: 'For NoExecute: how long the pod stays bound to a tainted node. Unset means forever.',
        format: 'int64',
      }),
    ),
  },
  { description: 'A toleration (same shape as core/v1 Toleration).' },
);

export const ResourceRequirements = Type.Object(
  {
    limits: Type.Optional(QuantityMap({ description: 'Maximum resources, for example {cpu: 500m, memory: 256Mi}.' })),
    requests: Type.Optional(QuantityMap({ description: 'Minimum resources the scheduler reserves, for example {cpu: 50m, memory: 64Mi}.' })),
  },
  { description: 'CPU and memory for the agent containers (same shape as core/v1 ResourceRequirements).' },
);

export const PvcSyncSpec = Type.Object(
  {
    enabled: Type.Optional(
      Type.Boolean({
        description:
          'Deploy the PVC-sync agent DaemonSet into this cluster, so the PVC data of Replications that name it as sourceCluster ' +
          'can be read from it. Set it on the cluster whose data is copied (the source), not on the DR cluster: the DR side only runs ' +
          'short-lived rsync Jobs, through the destination RemoteCluster\'s kubeconfig.',
        default: false,
      }),
    ),
    namespace: Type.Optional(
      Type.Unsafe<string>({ ...NamespaceName('Namespace in this cluster for the agent DaemonSet, its ServiceAccount, host key and registry.'), default: 'dr-syncer-agent' }),
    ),
    agentAddress: Type.Optional(
      StringEnum(['InternalIP', 'ExternalIP', 'Hostname'], {
        description:
          'Which address of a node the DR cluster\'s rsync Jobs connect to (the agent listens on the node\'s network, port sshPort). ' +
          'InternalIP when the clusters share a network, ExternalIP when the DR cluster reaches the source nodes from outside.',
        default: 'InternalIP',
      }),
    ),
    image: Type.Optional(
      Type.String({
        description: 'Agent container image (repository:tag or repository@digest). Default: the image the controller was released with.',
        maxLength: 512,
      }),
    ),
    imagePullPolicy: Type.Optional(
      StringEnum(['Always', 'IfNotPresent', 'Never'], { description: 'Pull policy for the agent image: Always, IfNotPresent or Never.' }),
    ),
    sshPort: Type.Optional(
      Type.Integer({
        description: 'Port the agents\' SSH server listens on (host network). At least 1024: the agents run without privileges, which lower ports need.',
        default: 2222, minimum: 1024, maximum: 65535,
      }),
    ),
    nodeSelector: Type.Optional(StringMap({ description: 'Node labels that select the nodes the agents run on.' })),
    tolerations: Type.Optional(
      Type.Array(Toleration, {
        description: 'Tolerations for the agent pods, so they also run on tainted nodes that host volumes.',
        maxItems: 64,
        'x-kubernetes-list-type': 'atomic',
      }),
    ),
    resources: Type.Optional(ResourceRequirements),
    keyRotationInterval: Type.Optional(
      Duration('How often the SSH keys shared between agents are replaced, as a duration such as "720h".', '720h'),
    ),
  },
  { description: 'PVC data replication: the agent DaemonSet this controller runs in the cluster.', default: {} },
);

export const RemoteClusterSpec = Type.Object(
  {
    kubeconfigSecretRef: KubeconfigSecretRef,
    git: Type.Optional(
      Type.Object(GitRepoSpec.properties, {
        description:
          'The GitOps repository this cluster deploys from. Replications that name this cluster as destinationCluster ' +
          'commit there (unless they set their own git.url). Omit for a cluster that is only a source.',
      }),
    ),
    pvcSync: Type.Optional(PvcSyncSpec),
  },
  { description: 'Desired state: how to reach the cluster and what to run in it.' },
);
export type RemoteClusterSpec = Static<typeof RemoteClusterSpec>;

export const ClusterHealth = StringEnum(['Unknown', 'Healthy', 'Unhealthy'], {
  description: 'Result of the last probe of the cluster: Unknown, Healthy or Unhealthy.',
});

export const RemoteClusterStatus = Type.Object(
  {
    health: Type.Optional(ClusterHealth),
    conditions: Type.Optional(
      Conditions(
        'Current state. Types: KubeconfigAvailable (the Secret and key exist), Reachable (the API server answered), ' +
          'AgentsReady (all PVC-sync agents are ready, when pvcSync.enabled), Ready (all of these).',
      ),
    ),
    observedGeneration: Type.Optional(
      Type.Integer({ description: 'The .metadata.generation this status was computed for.', format: 'int64', minimum: 0 }),
    ),
    serverVersion: Type.Optional(Type.String({ description: 'Kubernetes version the API server reported, for example v1.33.1.' })),
    lastProbeTime: Type.Optional(Timestamp('When the controller last tried to reach the cluster.')),
    agents: Type.Optional(
      Type.Object(
        {
          ready: Type.Integer({ description: 'Number of agent pods that are ready.', format: 'int32', minimum: 0 }),
          total: Type.Integer({ description: 'Number of agent pods that should run (one per selected node).', format: 'int32', minimum: 0 }),
          hostKeyFingerprint: Type.Optional(
            Type.String({ description: 'SHA256 fingerprint of the agents\' SSH host key, as ssh-keygen -lf prints it; DR-side Jobs pin it.' }),
          ),
          clientKeyFingerprint: Type.Optional(Type.String({ description: 'SHA256 fingerprint of the key DR-side Jobs use to log in to the agents.' })),
          keyCreationTime: Type.Optional(Timestamp('When the current client key was made; it is replaced after keyRotationInterval.')),
          nodes: Type.Optional(
            Type.Array(
              Type.Object(
                {
                  node: Type.String({ description: 'Node name.' }),
                  ready: Type.Boolean({ description: 'Whether the node\'s agent pod is ready.' }),
                  address: Type.Optional(Type.String({ description: 'The node address DR-side Jobs connect to (spec.pvcSync.agentAddress).' })),
                },
                { description: 'The agent on one node.' },
              ),
              { description: 'The agent on each node.', maxItems: 5000, 'x-kubernetes-list-type': 'atomic' },
            ),
          ),
        },
        { description: 'PVC-sync agent DaemonSet readiness (only when pvcSync.enabled).' },
      ),
    ),
  },
  { description: 'Observed state, written by the controller.' },
);
export type RemoteClusterStatus = Static<typeof RemoteClusterStatus>;

export const RemoteClusterSchema = Type.Object(
  {
    apiVersion: StringEnum(['dr-syncer.io/v1alpha1'], { description: 'API version: dr-syncer.io/v1alpha1.' }),
    kind: StringEnum(['RemoteCluster'], { description: 'Kind: RemoteCluster.' }),
    metadata: ObjectMeta,
    spec: RemoteClusterSpec,
    status: Type.Optional(RemoteClusterStatus),
  },
  {
    description:
      'RemoteCluster is a Kubernetes cluster dr-syncer can reach: the kubeconfig Secret to use, the GitOps repository ' +
      'the cluster deploys from, and the PVC-sync agents to run in it.',
  },
);
export type RemoteCluster = Static<typeof RemoteClusterSchema>;
