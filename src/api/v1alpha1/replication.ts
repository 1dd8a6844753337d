// Replication: copy the objects of one namespace (or of every namespace a selector matches) from
// a source cluster into the DR cluster's GitOps repository, optionally with PVC data.
import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import {
  AnyValue,
  Conditions,
  Duration,
  GIT_CREDENTIALS_DESCRIPTION,
  GitPath,
  GitUrl,
  LabelSelector,
  LocalSecretRef,
  MatchString,
  NamespaceName,
  ObjectMeta,
  ObjectName,
  PatternString,
  StringEnum,
  Timestamp,
  withRules,
} from './common.ts';

export const REPLICATION_MODES = ['Continuous', 'Scheduled', 'Manual'] as const;
export type ReplicationMode = (typeof REPLICATION_MODES)[number];

export { DEFAULT_RESOURCE_TYPES } from '../../core/select.ts';
import { DEFAULT_RESOURCE_TYPES } from '../../core/select.ts';

// 5-field cron (minute hour day-of-month month day-of-week; numbers, names, *, ?, lists, ranges,
// steps) or one of the @ macros. The controller validates the ranges when it parses it.
export const CRON_PATTERN =
  '^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9A-Za-z*?/,-]+( +[0-9A-Za-z*?/,-]+){4})$';

const RESOURCE_TYPE_PATTERN = '^(\\*|[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$';
const RESOURCE_TYPE_HINT =
  'must be a resource name such as "deployments" (the Kind "Deployment", its singular or short name work too, case-insensitive), "resource.group" for other API groups ' +
  '(for example "certificates.cert-manager.io"), or "*"';

function ResourceTypeList(description: string, def?: readonly string[]) {
  return Type.Array(MatchString(RESOURCE_TYPE_PATTERN, RESOURCE_TYPE_HINT, { description: 'A resource type.', maxLength: 253 }), {
    description,
    maxItems: 256,
    'x-kubernetes-list-type': 'set',
    ...(def !== undefined ? { default: [...def] } : {}),
  });
}

export const NamespaceSelector = Type.Object(
  {
    labelSelector: LabelSelector(
      'Source namespaces whose labels match are replicated, for example matchLabels {dr-syncer.io/replicate: "true"}. ' +
        'Namespaces that start or stop matching are picked up on the next sync.',
    ),
    destinationSuffix: Type.Optional(
      PatternString('^([-a-z0-9]*[a-z0-9])?$', 'must be lowercase letters, digits and "-", ending with a letter or digit, such as "-dr"', {
        description:
          'Appended to each source namespace name to form its destination namespace, for example "-dr" maps "shop" to "shop-dr". ' +
          'Empty: same name.',
        maxLength: 30,
      }),
    ),
  },
  { description: 'Select source namespaces by label instead of naming one. Mutually exclusive with sourceNamespace.' },
);

export const ContinuousSpec = Type.Object(
  {
    debounce: Type.Optional(
      Duration('In Continuous mode, how long to wait after a change before syncing, so bursts of changes become one commit.', '500ms'),
    ),
    resyncInterval: Type.Optional(
      Duration('In Continuous mode, a full sync also runs this often, to repair anything a missed watch event left behind.', '1h'),
    ),
  },
  { description: 'Tuning for mode Continuous (watch-driven sync).', default: {} },
);

export const TriggerSpec = Type.Object(
  {
    manual: Type.Optional(
      Type.String({
        description:
          'Set or change this value (for example to the current time) to request one sync now, in any mode. ' +
          'When the sync finishes, status.lastManualSync is set to the same value.',
        maxLength: 253,
      }),
    ),
  },
  { description: 'On-demand sync requests.' },
);

const ACCESS_MODES = ['ReadWriteOnce', 'ReadOnlyMany', 'ReadWriteMany', 'ReadWriteOncePod'] as const;

const StorageClassMapping = Type.Object(
  {
    from: Type.String({ description: 'StorageClass name in the source cluster.', minLength: 1, maxLength: 253 }),
    to: Type.String({ description: 'StorageClass name to use in the DR cluster instead.', minLength: 1, maxLength: 253 }),
  },
  { description: 'Replace one StorageClass name with another.' },
);

const AccessModeMapping = Type.Object(
  {
    from: StringEnum(ACCESS_MODES, { description: 'Access mode in the source PVC: ReadWriteOnce, ReadOnlyMany, ReadWriteMany or ReadWriteOncePod.' }),
    to: StringEnum(ACCESS_MODES, { description: 'Access mode to use in the DR cluster instead.' }),
  },
  { description: 'Replace one PVC access mode with another.' },
);

/** A cron schedule in UTC, as node-cron and the controller's scheduler read it. */
function Cron(description: string) {
  return MatchString(
    CRON_PATTERN,
    'schedule must be a 5-field cron expression (minute hour day-of-month month day-of-week) such as "0 */6 * * *", or @hourly, @daily, @weekly, @monthly or @yearly',
    { description, maxLength: 256 },
  );
}

/**
 * The rsync options a user may add: an allow-list, since rsync has many ways to change the remote
 * command or the transport (-e, --rsh, --rsync-path, -M/--remote-option, --old-args, --config,
 * --files-from…), and the DR side must never run anything but the pinned ssh to the endpoint.
 */
export const RSYNC_OPTION_PATTERN =
  '^(--checksum|-c|--compress|-z|--sparse|-S|--acls|-A|--xattrs|-X|--inplace|--partial|--whole-file|-W|--no-whole-file|' +
  '--delete-after|--delete-delay|--delete-during|--size-only|--ignore-times|-I|--one-file-system|-x|--omit-dir-times|-O|' +
  '--modify-window=-?[0-9]+|--max-size=[0-9]+[KMGkmg]?|--min-size=[0-9]+[KMGkmg]?)$';
const RsyncOption = PatternString(
  RSYNC_OPTION_PATTERN,
  'must be one of the allowed rsync options (--checksum, --compress, --sparse, --acls, --xattrs, --inplace, --partial, --whole-file, ' +
    '--delete-after, --delete-delay, --delete-during, --size-only, --ignore-times, --one-file-system, --omit-dir-times, ' +
    '--modify-window=N, --max-size=N, --min-size=N, or their short forms); options that change the remote command or the ssh transport are refused',
  { description: 'An extra rsync option from the allowed set.', maxLength: 64 },
);

export const DataSyncSpec = Type.Object(
  {
    bandwidthLimit: Type.Optional(
      Type.Integer({ description: 'Bandwidth limit per PVC transfer in KB/s (rsync --bwlimit). 0 or unset: no limit.', minimum: 0, format: 'int64' }),
    ),
    concurrency: Type.Optional(
      Type.Integer({ description: 'How many PVCs are copied at the same time.', default: 2, minimum: 1, maximum: 16 }),
    ),
    timeout: Type.Optional(Duration('A single PVC transfer that runs longer than this is stopped and reported as failed.', '30m')),
    schedule: Type.Optional(
      Cron(
        'When PVC data is copied (cron, UTC). Default: the Replication\'s schedule in Scheduled mode, every continuous.resyncInterval ' +
          'in Continuous mode, and in Manual mode when spec.trigger.manual changes.',
      ),
    ),
    excludePaths: Type.Optional(
      Type.Array(Type.String({ description: 'An rsync exclude pattern, for example "cache/" or "*.tmp".', minLength: 1, maxLength: 4096 }), {
        description: 'Paths inside the volumes that are not copied (rsync --exclude patterns).',
        maxItems: 128,
        'x-kubernetes-list-type': 'atomic',
      }),
    ),
    rsyncOptions: Type.Optional(
      Type.Array(RsyncOption, {
        description: 'Extra rsync options, for example ["--checksum"]. Options that run commands are refused.',
        maxItems: 32,
        'x-kubernetes-list-type': 'atomic',
      }),
    ),
  },
  { description: 'How PVC data is copied (when syncData is true).', default: {} },
);

export const PvcSpec = Type.Object(
  {
    storageClassMappings: Type.Optional(
      Type.Array(StorageClassMapping, {
        description: 'StorageClass names to replace in replicated PVCs, for the DR cluster\'s storage.',
        maxItems: 64,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['from'],
      }),
    ),
    accessModeMappings: Type.Optional(
      Type.Array(AccessModeMapping, {
        description: 'Access modes to replace in replicated PVCs.',
        maxItems: 4,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['from'],
      }),
    ),
    preserveVolumeAttributes: Type.Optional(
      Type.Boolean({
        description: 'Keep volumeMode, selector, dataSource and dataSourceRef on replicated PVCs (they are removed by default).',
        default: false,
      }),
    ),
    syncData: Type.Optional(
      Type.Boolean({
        description:
          'Also copy the data in the PVCs to the destination cluster with rsync over SSH. Needs a sourceCluster RemoteCluster with ' +
          'pvcSync.enabled (the agents run there) and a destinationCluster (the rsync Jobs run there).',
        default: false,
      }),
    ),
    dataSync: Type.Optional(DataSyncSpec),
  },
  { description: 'How PersistentVolumeClaims are replicated.', default: {} },
);

const JSON_POINTER_PATTERN = '^(/.*)?$';
const JSON_POINTER_HINT = 'must be a JSON pointer such as "/spec/replicas" or "/metadata/labels/app" (starting with "/")';

export const PatchOperation = withRules(
  Type.Object(
    {
      op: StringEnum(['add', 'remove', 'replace', 'move', 'copy', 'test'], {
        description: 'The RFC 6902 operation: add, remove, replace, move, copy or test.',
      }),
      path: MatchString(JSON_POINTER_PATTERN, JSON_POINTER_HINT, {
        description: 'JSON pointer to the target location, for example /spec/replicas. "~1" stands for "/" in a key.',
        maxLength: 1024,
      }),
      from: Type.Optional(
        MatchString(JSON_POINTER_PATTERN, JSON_POINTER_HINT, { description: 'JSON pointer to the source location (move and copy).', maxLength: 1024 }),
      ),
      value: Type.Optional(AnyValue({ description: 'The value to add, replace with or test against: any JSON value. Required for add, replace and test ' +
          '(checked by dr-syncer itself: the API server cannot inspect free-form values).' })),
    },
    { description: 'One RFC 6902 JSON-patch operation.' },
  ),
  [
    {
      rule: "self.op in ['move', 'copy'] ? has(self.from) : true",
      message: 'from is required when op is move or copy',
      fieldPath: '.from',
      reason: 'FieldValueRequired',
      check: (self) => (self.op === 'move' || self.op === 'copy' ? self.from !== undefined : true),
    },
    {
      rule: "self.op in ['add', 'replace', 'test'] ? has(self.value) : true",
      message: 'value is required when op is add, replace or test',
      fieldPath: '.value',
      reason: 'FieldValueRequired',
      check: (self) => (self.op === 'add' || self.op === 'replace' || self.op === 'test' ? 'value' in self : true),
      tsOnly: 'CEL cannot see value: a free-form (any JSON) field has no CEL type',
    },
  ],
);
export type PatchOperation = Static<typeof PatchOperation>;

export const TransformSpec = Type.Object(
  {
    target: Type.Optional(
      Type.Object(
        {
          kind: Type.Optional(Type.String({ description: 'Kind of the objects to patch, for example Deployment. Empty: every kind.', maxLength: 63 })),
          name: Type.Optional(Type.String({ description: 'Name of the object to patch. Empty: every name.', maxLength: 253 })),
          labelSelector: Type.Optional(LabelSelector('Only patch objects whose labels match.')),
        },
        { description: 'Which replicated objects the patch applies to. All given criteria must match; empty matches every object.' },
      ),
    ),
    patch: Type.Array(PatchOperation, {
      description: 'RFC 6902 JSON-patch operations applied, in order, to each matching object before it is written.',
      minItems: 1,
      maxItems: 64,
      'x-kubernetes-list-type': 'atomic',
    }),
  },
  { description: 'A JSON patch applied to matching objects on their way to the DR cluster.' },
);

export const SECRET_MODES = ['Omit', 'SOPS', 'Plaintext'] as const;

export const SecretsSpec = withRules(
  Type.Object(
    {
      mode: Type.Optional(
        StringEnum(SECRET_MODES, {
          description:
            'How Secrets are written to Git. Omit: not written. SOPS: data encrypted with SOPS for the age recipients, ' +
            'so the DR cluster decrypts them (Flux, ksops). Plaintext: written as is; only for repositories as protected as the cluster.',
          default: 'Omit',
        }),
      ),
      sops: Type.Optional(
        Type.Object(
          {
            ageRecipients: Type.Optional(
              Type.Array(
                PatternString('^age1[0-9a-z]{58}$', 'must be an age public key: "age1" followed by 58 lowercase letters and digits', {
                  description: 'An age public key (age1...).',
                }),
                {
                  description: 'age public keys that can decrypt the Secrets. The matching private key belongs in the DR cluster.',
                  maxItems: 32,
                  'x-kubernetes-list-type': 'set',
                },
              ),
            ),
          },
          { description: 'SOPS encryption settings (mode SOPS).' },
        ),
      ),
    },
    { description: 'How Secrets are handled. The default keeps Secrets out of Git.', default: {} },
  ),
  [
    {
      rule: "(has(self.mode) ? self.mode : 'Omit') != 'SOPS' || (has(self.sops) && has(self.sops.ageRecipients) && size(self.sops.ageRecipients) > 0)",
      message: 'sops.ageRecipients must list at least one age public key when mode is SOPS',
      fieldPath: '.sops.ageRecipients',
      reason: 'FieldValueRequired',
      check: (self) => (self.mode ?? 'Omit') !== 'SOPS' || (self.sops?.ageRecipients?.length ?? 0) > 0,
    },
  ],
);

export const ReplicationGitSpec = Type.Object(
  {
    url: Type.Optional(
      GitUrl(
        'Repository to commit to (https://..., http://..., or a local path). Overrides the destination RemoteCluster\'s git.url. ' +
          'Required when destinationCluster is not set.',
      ),
    ),
    branch: Type.Optional(
      Type.String({
        description: 'Branch to commit to. Default: the destination RemoteCluster\'s git.branch, or "main".',
        minLength: 1,
        maxLength: 255,
      }),
    ),
    path: Type.Optional(
      GitPath(
        'Directory inside the repository for this Replication\'s manifests. Default: the destination RemoteCluster\'s git.path, or the repository root. ' +
          'Each destination namespace gets a subdirectory.',
      ),
    ),
    credentialsSecretRef: Type.Optional(Type.Object(LocalSecretRef.properties, { description: GIT_CREDENTIALS_DESCRIPTION })),
    author: Type.Optional(
      Type.Object(
        {
          name: Type.Optional(Type.String({ description: 'Commit author name.', default: 'dr-syncer', minLength: 1, maxLength: 256 })),
          email: Type.Optional(
            Type.String({ description: 'Commit author email.', default: 'dr-syncer@localhost', minLength: 1, maxLength: 256 }),
          ),
        },
        { description: 'Author and committer of the commits.', default: {} },
      ),
    ),
    prune: Type.Optional(
      Type.Boolean({
        description:
          'Remove files from the repository when their source objects are deleted or no longer selected. Only files of types the ' +
          'source serves and that were read in that sync are removed: files of a type whose LIST failed, whose API group does not ' +
          'answer, or that the source does not serve right now (a CRD being replaced) are kept.',
        default: true,
      }),
    ),
  },
  { description: 'Where the manifests are committed. Fields set here override the destination RemoteCluster\'s git settings.', default: {} },
);

export const FailoverSpec = Type.Object(
  {
    active: Type.Optional(
      Type.Boolean({
        description:
          'true: fail over. The DR cluster becomes the active site: the source-to-DR sync and PVC data copies stop, and one commit ' +
          'restores every workload\'s replicas from dr-syncer.io/original-replicas and un-suspends the CronJobs that were active at the ' +
          'source. Set back to false to fail back: one commit scales the DR workloads to 0 again, the source workloads are restored ' +
          '(after a cutover) once the DR cluster runs them at 0, and the sync resumes. `dr-syncer failover` and `dr-syncer failback` set it.',
        default: false,
      }),
    ),
    cutover: Type.Optional(
      Type.Boolean({
        description:
          'With active: first scale the source workloads to 0 (their counts kept in dr-syncer.io/original-replicas, restored at failback) ' +
          'and suspend their CronJobs, so both sites never run at once. Refused while the source cluster is unreachable, unless force is set.',
        default: false,
      }),
    ),
    force: Type.Optional(
      Type.Boolean({
        description:
          'With cutover: fail over even when the source cannot be scaled down (it is unreachable); the source workloads are left as they are. ' +
          'With failback: restore the source and resume the sync without waiting until the DR cluster runs its workloads at 0.',
        default: false,
      }),
    ),
    requestedBy: Type.Optional(
      Type.String({ description: 'Who asked for the failover or failback (recorded in status.failover and in the commit). The CLI sets user@host.', maxLength: 256 }),
    ),
  },
  { description: 'Failover and failback, as commits to the DR repository.' },
);

export const ReplicationSpec = withRules(
  Type.Object(
    {
      sourceCluster: Type.Optional(
        ObjectName('RemoteCluster (same namespace) to copy from. Omit to copy from the cluster the controller runs in.'),
      ),
      destinationCluster: Type.Optional(
        ObjectName(
          'RemoteCluster (same namespace) that is the DR target: its git repository receives the manifests and, with pvc.syncData, ' +
            'its agents receive the PVC data. Required unless git.url is set.',
        ),
      ),
      sourceNamespace: Type.Optional(NamespaceName('Namespace to replicate. Exactly one of sourceNamespace and namespaceSelector must be set.')),
      destinationNamespace: Type.Optional(
        NamespaceName('Namespace name in the DR cluster. Default: the same as sourceNamespace. Only with sourceNamespace.'),
      ),
      namespaceSelector: Type.Optional(NamespaceSelector),
      mode: Type.Optional(
        StringEnum(REPLICATION_MODES, {
          description:
            'When to sync. Continuous: on every change (watch), plus continuous.resyncInterval. Scheduled: on the cron schedule. ' +
            'Manual: only when trigger.manual changes.',
          default: 'Scheduled',
        }),
      ),
      schedule: Type.Optional(
        Cron(
          'Cron schedule for mode Scheduled, in UTC: 5 fields (minute hour day-of-month month day-of-week), for example "*/15 * * * *", ' +
            'or @hourly, @daily, @weekly, @monthly, @yearly. Required when mode is Scheduled.',
        ),
      ),
      continuous: Type.Optional(ContinuousSpec),
      paused: Type.Optional(
        Type.Boolean({ description: 'Stop syncing (including manual triggers) until set back to false. Nothing is deleted.', default: false }),
      ),
      trigger: Type.Optional(TriggerSpec),
      resourceTypes: Type.Optional(
        ResourceTypeList(
          'Resource types to replicate, as lowercase plural names ("deployments") or "resource.group" for other API groups ' +
            '("certificates.cert-manager.io"). "*" means every namespaced type the source API server lists. ' +
            'A name the source does not serve stops the sync (reason UnknownResourceTypes) and changes nothing in the repository. ' +
            'Default: the common workload, config, network and RBAC types.',
          DEFAULT_RESOURCE_TYPES,
        ),
      ),
      excludeResourceTypes: Type.Optional(
        ResourceTypeList('Resource types never replicated, even when resourceTypes includes them (useful with "*").'),
      ),
      labelSelector: Type.Optional(LabelSelector('Only replicate objects whose labels match. Empty: every object.')),
      scaleToZero: Type.Optional(
        Type.Boolean({
          description:
            'Write Deployments and StatefulSets with replicas 0, keeping the source count in the annotation ' +
            'dr-syncer.io/original-replicas, so the DR copies stay idle until failover.',
          default: true,
        }),
      ),
      pvc: Type.Optional(PvcSpec),
      transforms: Type.Optional(
        Type.Array(TransformSpec, {
          description: 'JSON patches applied to matching objects, in order, after the built-in clean-up.',
          maxItems: 64,
          'x-kubernetes-list-type': 'atomic',
        }),
      ),
      secrets: Type.Optional(SecretsSpec),
      git: Type.Optional(ReplicationGitSpec),
      failover: Type.Optional(FailoverSpec),
      recoveryPointObjective: Type.Optional(
        Duration(
          'The DR cluster is reported ready (status.recoveryPoint.verdict) while the newest source state it runs, for objects and for PVC ' +
            'data, is at most this old.',
          '1h',
        ),
      ),
    },
    { description: 'Desired state: what to replicate, from where, to where and when.' },
  ),
  [
    {
      rule: 'has(self.sourceNamespace) != has(self.namespaceSelector)',
      message: 'exactly one of spec.sourceNamespace and spec.namespaceSelector must be set',
      check: (self) => (self.sourceNamespace !== undefined) !== (self.namespaceSelector !== undefined),
    },
    {
      rule: '!has(self.destinationNamespace) || has(self.sourceNamespace)',
      message: 'destinationNamespace can only be set together with sourceNamespace (with namespaceSelector use namespaceSelector.destinationSuffix)',
      fieldPath: '.destinationNamespace',
      reason: 'FieldValueForbidden',
      check: (self) => self.destinationNamespace === undefined || self.sourceNamespace !== undefined,
    },
    {
      rule: "(has(self.mode) ? self.mode : 'Scheduled') != 'Scheduled' || has(self.schedule)",
      message: 'schedule is required when mode is Scheduled (the default mode), for example "0 * * * *" or "@hourly"',
      fieldPath: '.schedule',
      reason: 'FieldValueRequired',
      check: (self) => (self.mode ?? 'Scheduled') !== 'Scheduled' || self.schedule !== undefined,
    },
    {
      rule: 'has(self.destinationCluster) || (has(self.git) && has(self.git.url))',
      message: 'destinationCluster is required unless git.url is set: the manifests need a Git repository to go to',
      fieldPath: '.destinationCluster',
      reason: 'FieldValueRequired',
      check: (self) => self.destinationCluster !== undefined || self.git?.url !== undefined,
    },
    {
      rule: '!(has(self.pvc) && has(self.pvc.syncData) && self.pvc.syncData) || has(self.destinationCluster)',
      message: 'destinationCluster is required when pvc.syncData is true: PVC data is copied to that cluster',
      fieldPath: '.destinationCluster',
      reason: 'FieldValueRequired',
      check: (self) => self.pvc?.syncData !== true || self.destinationCluster !== undefined,
    },
  ],
);
export type ReplicationSpec = Static<typeof ReplicationSpec>;

export const REPLICATION_PHASES = ['Pending', 'Syncing', 'Synced', 'Failed', 'Paused', 'FailedOver'] as const;
export const FAILOVER_STATES = ['FailingOver', 'FailedOver', 'FailingBack', 'CopyingDataBack', 'Standby'] as const;
/** The copy of PVC data back from the DR cluster to the source during a failback (status.failover.dataCopyBack.phase). */
export const DATA_COPY_BACK_PHASES = ['Pending', 'Copying', 'Copied', 'Failed', 'Stopped', 'NotCopied'] as const;
export type ReplicationPhase = (typeof REPLICATION_PHASES)[number];

const ResourceCount = Type.Object(
  {
    group: Type.String({ description: 'API group; empty for the core group.' }),
    kind: Type.String({ description: 'Kind, for example Deployment.' }),
    count: Type.Integer({ description: 'Number of objects.', format: 'int32', minimum: 0 }),
  },
  { description: 'Number of objects of one kind.' },
);

const SkippedCount = Type.Object(
  {
    group: Type.String({ description: 'API group; empty for the core group.' }),
    kind: Type.String({ description: 'Kind, for example Secret.' }),
    reason: Type.String({ description: 'Why they were skipped, for example "secrets.mode is Omit" or "owned by Deployment/web; its owner is copied instead".' }),
    count: Type.Integer({ description: 'Number of objects skipped for this reason.', format: 'int32', minimum: 0 }),
  },
  { description: 'Number of objects of one kind that were left out, and why.' },
);

const PvcStatus = Type.Object(
  {
    name: Type.String({ description: 'Name of the PVC.' }),
    namespace: Type.String({ description: 'Source namespace of the PVC.' }),
    phase: Type.Optional(Type.String({ description: 'Data-sync state of the PVC: Pending, Syncing, Synced, Failed or Skipped.' })),
    bytesTransferred: Type.Optional(Type.Integer({ description: 'Bytes sent during the last data sync.', format: 'int64', minimum: 0 })),
    filesTransferred: Type.Optional(Type.Integer({ description: 'Files sent during the last data sync.', format: 'int64', minimum: 0 })),
    lastSyncTime: Type.Optional(Timestamp('When the last successful data sync of the PVC finished.')),
    lastSyncDuration: Type.Optional(Type.String({ description: 'How long the last data sync took, for example "42.5s".' })),
    lastExitCode: Type.Optional(Type.Integer({ description: 'rsync\'s exit code in the last attempt (23 and 24, partial transfers, are failures).', format: 'int32' })),
    lastAttemptTime: Type.Optional(Timestamp('When the last attempt started.')),
    message: Type.Optional(Type.String({ description: 'Details, for example the error of a failed sync.', maxLength: 32768 })),
  },
  { description: 'Data-sync state of one PVC.' },
);

export const ReplicationStatus = Type.Object(
  {
    phase: Type.Optional(
      StringEnum(REPLICATION_PHASES, { description: 'Summary state: Pending, Syncing, Synced, Failed, Paused or FailedOver (the DR cluster is the active site; no syncs run).' }),
    ),
    conditions: Type.Optional(
      Conditions(
        'Current state. Types: Ready (the last sync succeeded and the configuration is valid; its reason says why not), ' +
          'Synced (the last sync result). Each carries the observedGeneration it was computed for.',
      ),
    ),
    observedGeneration: Type.Optional(
      Type.Integer({ description: 'The .metadata.generation the last sync used.', format: 'int64', minimum: 0 }),
    ),
    lastSyncTime: Type.Optional(Timestamp('When the last successful sync finished.')),
    lastSyncStartTime: Type.Optional(Timestamp('When the last successful sync started reading the source: the DR repository holds the source as it was then.')),
    lastSyncDuration: Type.Optional(Type.String({ description: 'How long the last sync took, from reading the source to the push, for example "1.2s".' })),
    nextSyncTime: Type.Optional(Timestamp('When the next scheduled sync is due (Scheduled mode, and Continuous mode\'s resync).')),
    lastManualSync: Type.Optional(
      Type.String({ description: 'The spec.trigger.manual value the controller handled last. Equal to spec.trigger.manual once the requested sync ran.' }),
    ),
    lastCommit: Type.Optional(Type.String({ description: 'SHA of the last commit written to the Git repository.' })),
    resources: Type.Optional(
      Type.Array(ResourceCount, {
        description: 'Objects written by the last sync, per kind.',
        maxItems: 1024,
        'x-kubernetes-list-type': 'atomic',
      }),
    ),
    skipped: Type.Optional(
      Type.Array(SkippedCount, {
        description: 'Objects the last sync left out, per kind and reason.',
        maxItems: 1024,
        'x-kubernetes-list-type': 'atomic',
      }),
    ),
    pvcs: Type.Optional(
      Type.Array(PvcStatus, { description: 'Data-sync state per PVC (pvc.syncData).', maxItems: 4096, 'x-kubernetes-list-type': 'atomic' }),
    ),
    dataSync: Type.Optional(
      Type.Object(
        {
          phase: Type.Optional(Type.String({ description: 'Result of the last PVC data sync: Synced, Pending (waiting for something, see pvcs), Failed, Syncing, or Stopped (the Replication was paused or syncData turned off during the copy).' })),
          message: Type.Optional(Type.String({ description: 'Summary of the last PVC data sync.', maxLength: 32768 })),
          lastStartTime: Type.Optional(Timestamp('When the last PVC data sync started.')),
          lastCompletionTime: Type.Optional(Timestamp('When the last PVC data sync ended, whatever its result.')),
          nextSyncTime: Type.Optional(Timestamp('When the next PVC data sync is due.')),
          lastManualSync: Type.Optional(Type.String({ description: 'The spec.trigger.manual value the last PVC data sync ran for.' })),
        },
        { description: 'PVC data sync as a whole (pvc.syncData); per-PVC figures are in pvcs.' },
      ),
    ),
    lastError: Type.Optional(
      Type.Object(
        {
          message: Type.String({ description: 'The error message.', maxLength: 32768 }),
          time: Type.Optional(Timestamp('When the error happened.')),
          reason: Type.Optional(Type.String({ description: 'CamelCase category, for example SourceUnreachable, GitPushRejected or InvalidSpec (docs/troubleshooting.md lists them).' })),
        },
        { description: 'The last error, kept until a sync succeeds.' },
      ),
    ),
    sourceNamespaces: Type.Optional(
      Type.Array(Type.String({ description: 'A namespace name.' }), {
        description: 'Source namespaces the last sync covered (with namespaceSelector: the namespaces that matched).',
        maxItems: 4096,
        'x-kubernetes-list-type': 'atomic',
      }),
    ),
    sourceDigest: Type.Optional(
      Type.String({
        description: 'Continuous mode: digest of the watched source objects (without their status) that the last successful sync covered. ' +
          'A sync is due whenever the source no longer matches it, also after a failure or a restart.',
        maxLength: 128,
      }),
    ),
    failover: Type.Optional(
      Type.Object(
        {
          state: Type.Optional(
            StringEnum(FAILOVER_STATES, {
              description:
                'FailingOver (committing, or scaling the source down), FailedOver (the DR repository runs the workloads), FailingBack ' +
                '(DR committed back to 0; waiting for the DR cluster to apply it, then restoring the source), CopyingDataBack (with pvc.syncData: the DR ' +
                'cluster runs the workloads at 0 and the PVC data written there during the failover is being copied back to the source, see dataCopyBack), ' +
                'Standby (failed back; the sync runs).',
            }),
          ),
          requestedBy: Type.Optional(Type.String({ description: 'spec.failover.requestedBy of the last failover or failback.' })),
          failoverTime: Type.Optional(Timestamp('When the failover commit was pushed.')),
          failoverCommit: Type.Optional(Type.String({ description: 'The failover commit.' })),
          workloads: Type.Optional(Type.Integer({ description: 'Workloads (Deployments, StatefulSets, CronJobs) the failover commit activated.', format: 'int32', minimum: 0 })),
          sourceScaledDown: Type.Optional(Type.Boolean({ description: 'Whether the cutover scaled the source workloads to 0 (restored at failback).' })),
          failbackTime: Type.Optional(Timestamp('When the failback finished (the sync resumed).')),
          failbackCommit: Type.Optional(Type.String({ description: 'The failback commit.' })),
          message: Type.Optional(Type.String({ description: 'What the last step did or is waiting for.', maxLength: 32768 })),
          dataCopyBack: Type.Optional(
            Type.Object(
              {
                phase: Type.Optional(
                  StringEnum(DATA_COPY_BACK_PHASES, {
                    description:
                      'Pending (asked for, or waiting for something: see message), Copying, Copied (every PVC\'s DR data is in the source PVC), Failed (retried), ' +
                      'Stopped (the copy was interrupted: the Replication was paused), NotCopied (spec.failover.force failed back without copying: the DR data was NOT copied back).',
                  }),
                ),
                message: Type.Optional(Type.String({ description: 'What the copy did or is waiting for.', maxLength: 32768 })),
                requestTime: Type.Optional(Timestamp('When the failback asked for the copy (the DR cluster ran the workloads at 0).')),
                lastStartTime: Type.Optional(Timestamp('When the last attempt started.')),
                lastCompletionTime: Type.Optional(Timestamp('When the last attempt ended, whatever its result.')),
                copiedTime: Type.Optional(Timestamp('When every PVC had been copied back (the source workloads were restored after it).')),
                pvcs: Type.Optional(
                  Type.Array(PvcStatus, { description: 'Per PVC (namespace: the source cluster\'s), the last attempt to copy its DR data back.', maxItems: 4096, 'x-kubernetes-list-type': 'atomic' }),
                ),
              },
              {
                description:
                  'With pvc.syncData: the copy of the PVC data written in the DR cluster during the failover back to the source cluster, during the failback ' +
                  '(state CopyingDataBack), through PVC-sync agents in the DR cluster. Written by the PVC data controller; requested (and reset) by the failback.',
              },
            ),
          ),
        },
        { description: 'Failover and failback (spec.failover).' },
      ),
    ),
    recoveryPoint: Type.Optional(
      Type.Object(
        {
          verdict: Type.Optional(StringEnum(['Ready', 'NotReady', 'Unknown'] as const, { description: 'Ready when both the objects and the data the DR cluster runs are within spec.recoveryPointObjective.' })),
          reason: Type.Optional(Type.String({ description: 'Why, for a NotReady or Unknown verdict.', maxLength: 32768 })),
          objectsTime: Type.Optional(Timestamp('The newest source state of the objects that the DR cluster has applied.')),
          dataTime: Type.Optional(Timestamp('The oldest of the PVCs\' last complete copies (when that copy started), with pvc.syncData.')),
          appliedCommit: Type.Optional(Type.String({ description: 'The DR repository commit the DR cluster\'s GitOps tool reports as applied.' })),
          appliedBy: Type.Optional(Type.String({ description: 'Which object reported it, for example "Kustomization flux-system/dr-syncer-1a2b3c".' })),
          checkedTime: Type.Optional(Timestamp('When the DR cluster was last asked.')),
        },
        { description: 'The measured recovery point: how old the DR cluster\'s state would be if the source were lost now.' },
      ),
    ),
    syncHistory: Type.Optional(
      Type.Array(
        Type.Object(
          {
            commit: Type.String({ description: 'The branch tip a sync of this Replication left (its own commit, or the unchanged tip of a sync with no changes).' }),
            sourceTime: Timestamp('The newest source state this commit is known to hold: when the last sync that left the branch here started reading the source.'),
          },
          { description: 'A commit and the source state it holds.' },
        ),
        { description: 'The last branch tips this Replication\'s syncs left, newest first, so the recovery point of an older applied commit is known.', maxItems: 20, 'x-kubernetes-list-type': 'atomic' },
      ),
    ),
    gitTargets: Type.Optional(
      Type.Array(
        Type.Object(
          {
            url: Type.String({ description: 'Repository URL.' }),
            branch: Type.String({ description: 'Branch.' }),
            path: Type.String({ description: 'Base path in the repository.' }),
            credentialsSecret: Type.Optional(Type.String({ description: 'Secret (in this namespace) with the credentials used for it.' })),
          },
          { description: 'A repository folder this Replication wrote.' },
        ),
        {
          description: 'Every repository, branch and path this Replication has written and not yet cleaned up: ' +
            'after spec.git changes the old folders are removed, and deletion removes them all, with Git alone.',
          maxItems: 64,
          'x-kubernetes-list-type': 'atomic',
        },
      ),
    ),
  },
  { description: 'Observed state, written by the controller.' },
);
export type ReplicationStatus = Static<typeof ReplicationStatus>;

export const ReplicationSchema = Type.Object(
  {
    apiVersion: StringEnum(['dr-syncer.io/v1alpha1'], { description: 'API version: dr-syncer.io/v1alpha1.' }),
    kind: StringEnum(['Replication'], { description: 'Kind: Replication.' }),
    metadata: ObjectMeta,
    spec: ReplicationSpec,
    status: Type.Optional(ReplicationStatus),
  },
  {
    description:
      'Replication copies the objects of a namespace (or of every namespace a selector matches) from a source cluster ' +
      'into the DR cluster\'s GitOps repository, on a schedule, continuously or on demand, optionally with PVC data.',
  },
);
export type Replication = Static<typeof ReplicationSchema>;
