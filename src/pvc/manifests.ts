// The objects of the PVC data path, as pure functions of typed settings: the agent (DaemonSet,
// its ServiceAccount and Role, host key Secret, registry ConfigMap) in the source cluster, and
// per transfer the rsync endpoint Job in the source cluster and the rsync Job in the
// destination cluster, each with its Secret. The fixed parts are the YAML files in templates/;
// only what varies is set here. No I/O but reading those templates once.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { publicKeyOf } from '../agent/keys.ts';
import { AGENT_CONFIGMAP } from '../agent/registry.ts';
import { OPERATION_LABEL } from '../core/select.ts';
import type { KubeObject } from '../core/types.ts';

export const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'dr-syncer' };
export { OPERATION_LABEL };
export const REPLICATION_UID_LABEL = 'dr-syncer.io/replication-uid';
export const PVC_ANNOTATION = 'dr-syncer.io/pvc';
export const FINGERPRINT_ANNOTATION = 'dr-syncer.io/fingerprint';
export const CREATED_ANNOTATION = 'dr-syncer.io/created-at';
export const AGENT_NAME = 'dr-syncer-agent';
export const AGENT_HOST_KEY_SECRET = 'dr-syncer-agent-host-key';
export const ENDPOINT_PORT = 2223;
const KEYS_DIR = '/etc/dr-syncer/keys';

type Obj = Record<string, unknown>;

/** templates/ next to src/ (tsx) or dist/src/ (compiled): the first one found going up. */
function templatesDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, 'templates');
    try {
      readFileSync(path.join(candidate, 'agent-daemonset.yaml'));
      return candidate;
    } catch {
      dir = path.dirname(dir);
    }
  }
  throw new Error('templates/ not found next to the program: the installation is incomplete');
}

const cache = new Map<string, Obj>();
function template(name: string): Obj {
  let t = cache.get(name);
  if (!t) {
    t = parse(readFileSync(path.join(templatesDir(), name), 'utf8')) as Obj;
    cache.set(name, t);
  }
  return structuredClone(t);
}

export interface EnvVar {
  name: string;
  value: string;
}

/** What the agent in one source cluster looks like (RemoteCluster.spec.pvcSync or the controller's flags). */
export interface AgentSettings {
  namespace: string;
  image: string;
  imagePullPolicy?: string;
  sshPort: number;
  nodeSelector?: Record<string, string>;
  tolerations?: Obj[];
  resources?: Obj;
  /**
   * Extra environment for the agent pods. Only for clusters whose pods cannot reach the API
   * through the kubernetes Service (the test clusters have no kube-proxy); a real kubelet sets
   * KUBERNETES_SERVICE_HOST/PORT itself.
   */
  podEnv?: EnvVar[];
}

const podSpec = (o: Obj): Obj => ((o.spec as Obj).template as Obj).spec as Obj;
const firstContainer = (o: Obj): Obj => (podSpec(o).containers as Obj[])[0]!;

export function agentObjects(s: AgentSettings, hostPrivateKey: string): KubeObject[] {
  const ns = s.namespace;
  const meta = (name: string) => ({ name, namespace: ns, labels: { ...MANAGED_BY, 'app.kubernetes.io/name': AGENT_NAME } });
  const ds = template('agent-daemonset.yaml');
  (ds.metadata as Obj).namespace = ns;
  const spec = podSpec(ds);
  const c = firstContainer(ds);
  c.image = s.image;
  if (s.imagePullPolicy) c.imagePullPolicy = s.imagePullPolicy;
  const port = String(s.sshPort);
  c.args = (c.args as string[]).map((a) => a.replace(/:2222$/, `:${port}`));
  c.ports = [{ name: 'ssh', containerPort: s.sshPort, protocol: 'TCP' }];
  (c.readinessProbe as Obj).tcpSocket = { port: s.sshPort };
  (c.livenessProbe as Obj).tcpSocket = { port: s.sshPort };
  if (s.resources) c.resources = s.resources;
  if (s.podEnv?.length) c.env = [...(c.env as Obj[]), ...s.podEnv];
  if (s.nodeSelector) spec.nodeSelector = s.nodeSelector;
  if (s.tolerations) spec.tolerations = s.tolerations;
  // The agents read their host key once: a new key rolls them (the pinned fingerprint changes too).
  const tmeta = (ds.spec as Obj).template as Obj;
  tmeta.metadata = { ...(tmeta.metadata as Obj), annotations: { [FINGERPRINT_ANNOTATION]: publicKeyOf(hostPrivateKey).fingerprint } };
  return [
    // hostNetwork needs the privileged Pod Security level; only dr-syncer's agents run here.
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { ...MANAGED_BY, 'pod-security.kubernetes.io/enforce': 'privileged' } } },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(AGENT_NAME), automountServiceAccountToken: false },
    {
      // Least privilege: the one ConfigMap that holds the agents' registry, nothing else.
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: meta(AGENT_NAME),
      rules: [{ apiGroups: [''], resources: ['configmaps'], resourceNames: [AGENT_CONFIGMAP], verbs: ['get', 'list', 'watch'] }],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: meta(AGENT_NAME),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: AGENT_NAME },
      subjects: [{ kind: 'ServiceAccount', name: AGENT_NAME, namespace: ns }],
    },
    {
      apiVersion: 'v1', kind: 'Secret', metadata: meta(AGENT_HOST_KEY_SECRET), type: 'Opaque',
      data: { ssh_host_ed25519_key: Buffer.from(hostPrivateKey).toString('base64') },
    },
    ds as KubeObject,
  ];
}

/** One transfer of one PVC: who, from where, to where, how. */
export interface TransferPlan {
  opId: string;
  replication: { namespace: string; name: string; uid: string };
  image: string;
  imagePullPolicy?: string;
  source: { namespace: string; pvc: string; /** Where a running pod mounts it (RWO): the endpoint must run there. */ node?: string };
  destination: { namespace: string; pvc: string };
  rsync: { bandwidthLimit?: number; excludePaths?: string[]; rsyncOptions?: string[] };
  /** The transfer is stopped after this long (the Jobs' activeDeadlineSeconds). */
  timeoutSeconds: number;
}

export const operationName = (opId: string) => `dr-syncer-rsync-${opId}`;

function operationMeta(p: TransferPlan, namespace: string, role: string): KubeObject['metadata'] {
  return {
    name: operationName(p.opId),
    namespace,
    labels: { ...MANAGED_BY, 'app.kubernetes.io/name': role, [OPERATION_LABEL]: p.opId, [REPLICATION_UID_LABEL]: p.replication.uid },
    annotations: { [PVC_ANNOTATION]: `${p.source.namespace}/${p.source.pvc}`, 'dr-syncer.io/replication': `${p.replication.namespace}/${p.replication.name}` },
  };
}

function fillJob(job: Obj, p: TransferPlan, namespace: string, role: string, claim: string, deadline: number): Obj {
  job.metadata = operationMeta(p, namespace, role);
  const spec = job.spec as Obj;
  spec.activeDeadlineSeconds = deadline;
  const tmpl = spec.template as Obj;
  tmpl.metadata = { labels: { ...((tmpl.metadata as Obj).labels as Obj), [OPERATION_LABEL]: p.opId, [REPLICATION_UID_LABEL]: p.replication.uid } };
  const ps = tmpl.spec as Obj;
  for (const v of ps.volumes as Obj[]) {
    if (v.persistentVolumeClaim) (v.persistentVolumeClaim as Obj).claimName = claim;
    if (v.secret) (v.secret as Obj).secretName = operationName(p.opId);
  }
  const c = (ps.containers as Obj[])[0]!;
  c.image = p.image;
  if (p.imagePullPolicy) c.imagePullPolicy = p.imagePullPolicy;
  return ps;
}

/** The endpoint Job (source cluster). Lives a little longer than the transfer it serves. */
export function endpointJob(p: TransferPlan): KubeObject {
  const job = template('rsync-endpoint-job.yaml');
  const ps = fillJob(job, p, p.source.namespace, 'dr-syncer-rsync-endpoint', p.source.pvc, p.timeoutSeconds + 300);
  if (p.source.node) {
    // A ReadWriteOnce volume in use can only be mounted again on the node that has it.
    ps.affinity = { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: [p.source.node] }] }] } } };
    // That node may be tainted for its workload (database nodes often are): the endpoint goes there anyway.
    ps.tolerations = [{ operator: 'Exists' }];
  }
  return job as KubeObject;
}

/** The endpoint's keys: its own host key (made for this transfer) and the Replication's public key. */
export function endpointSecret(p: TransferPlan, hostPrivateKey: string, replicationPublicKey: string, owner: KubeObject): KubeObject {
  return {
    apiVersion: 'v1', kind: 'Secret', type: 'Opaque',
    metadata: { ...operationMeta(p, p.source.namespace, 'dr-syncer-rsync-endpoint'), ownerReferences: [ownerRef(owner)] },
    data: { host_key: b64(hostPrivateKey), authorized_keys: b64(replicationPublicKey) },
  } as KubeObject;
}

/** Where the DR-side ssh goes: the agent on the endpoint's node, then the endpoint pod. */
export interface Route {
  agentHost: string;
  agentPort: number;
  agentHostPublicKey: string;
  endpointIP: string;
  endpointHostPublicKey: string;
}

/** known_hosts line for host:port, as OpenSSH writes non-22 ports. */
const knownHost = (host: string, port: number, publicKey: string) => `[${host}]:${port} ${publicKey.trim().split(/\s+/).slice(0, 2).join(' ')}\n`;

/**
 * The ssh transport, complete: every option that matters is fixed here, in a file the user cannot
 * change (rsyncOptions cannot name -e or --rsh). Host keys are pinned; nothing is asked or learnt.
 */
export function sshConfig(r: Route): string {
  const common = [
    `  UserKnownHostsFile ${KEYS_DIR}/known_hosts`,
    '  GlobalKnownHostsFile /dev/null',
    '  StrictHostKeyChecking yes',
    '  UpdateHostKeys no',
    '  IdentitiesOnly yes',
    '  BatchMode yes',
    '  PasswordAuthentication no',
    '  KbdInteractiveAuthentication no',
    '  ForwardAgent no',
    '  ServerAliveInterval 15',
    '  ServerAliveCountMax 4',
    '  ConnectTimeout 20',
    // ssh2's cheapest cipher first (bench/pvc.bench.ts: 2.3x less bastion CPU than chacha20).
    '  Ciphers aes128-gcm@openssh.com,chacha20-poly1305@openssh.com',
  ];
  return [
    'Host agent',
    `  HostName ${r.agentHost}`,
    `  Port ${r.agentPort}`,
    '  User dr-syncer',
    `  IdentityFile ${KEYS_DIR}/agent_key`,
    ...common,
    'Host endpoint',
    `  HostName ${r.endpointIP}`,
    `  Port ${ENDPOINT_PORT}`,
    '  User rsync',
    `  IdentityFile ${KEYS_DIR}/endpoint_key`,
    `  ProxyCommand ssh -F ${KEYS_DIR}/ssh_config -W %h:%p agent`,
    ...common,
    '',
  ].join('\n');
}

export function knownHosts(r: Route): string {
  return knownHost(r.agentHost, r.agentPort, r.agentHostPublicKey) + knownHost(r.endpointIP, ENDPOINT_PORT, r.endpointHostPublicKey);
}

/**
 * rsync's arguments: archive without devices (-rlptgo), hard links, numeric owners, deletions,
 * statistics; then the user's limits, excludes and options (each one argv element, never a
 * shell word); the transport last, so no option can replace it. Updates and deletions are
 * delayed to the end of the run, so a copy that breaks off leaves the DR volume as the last
 * complete copy plus, at most, what the end of the run had begun to put in place.
 */
export function rsyncArgs(p: TransferPlan): string[] {
  const args = ['-rlptgoH', '--numeric-ids', '--delete-delay', '--delay-updates', '--stats', '--timeout=300'];
  if (p.rsync.bandwidthLimit) args.push(`--bwlimit=${p.rsync.bandwidthLimit}`);
  for (const e of p.rsync.excludePaths ?? []) args.push(`--exclude=${e}`);
  args.push(...(p.rsync.rsyncOptions ?? []));
  args.push('-e', `ssh -F ${KEYS_DIR}/ssh_config`, 'endpoint:/data/', '/data/');
  return args;
}

/** The DR-side Job (destination cluster): rsync into the DR PVC. */
export function rsyncJob(p: TransferPlan): KubeObject {
  const job = template('rsync-job.yaml');
  const ps = fillJob(job, p, p.destination.namespace, 'dr-syncer-rsync', p.destination.pvc, p.timeoutSeconds);
  (ps.containers as Obj[])[0]!.args = rsyncArgs(p);
  return job as KubeObject;
}

export function rsyncSecret(p: TransferPlan, r: Route, keys: { agentPrivateKey: string; endpointPrivateKey: string }, owner: KubeObject): KubeObject {
  return {
    apiVersion: 'v1', kind: 'Secret', type: 'Opaque',
    metadata: { ...operationMeta(p, p.destination.namespace, 'dr-syncer-rsync'), ownerReferences: [ownerRef(owner)] },
    data: {
      agent_key: b64(keys.agentPrivateKey), endpoint_key: b64(keys.endpointPrivateKey),
      known_hosts: b64(knownHosts(r)), ssh_config: b64(sshConfig(r)),
    },
  } as KubeObject;
}

type OwnerRef = NonNullable<KubeObject['metadata']['ownerReferences']>[number];
function ownerRef(o: KubeObject): OwnerRef {
  return { apiVersion: o.apiVersion, kind: o.kind, name: o.metadata.name, uid: o.metadata.uid, controller: true } as OwnerRef;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
