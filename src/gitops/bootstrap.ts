// What a DR cluster needs to follow the DR repository: Flux's GitRepository + Kustomization, or an
// Argo CD Application, plus the repository's credentials when asked for. Pure: the YAML templates
// (templates/flux-*.yaml, templates/argocd-*.yaml, read by ./templates.ts) and everything that
// varies come in as arguments; the output keeps the templates' comments.
import { createHash } from 'node:crypto';
import { isSeq, parseAllDocuments } from 'yaml';
import type { Document } from 'yaml';
import type { RemoteCluster, Replication } from '../api/v1alpha1/index.ts';
import type { KubeObject } from '../core/types.ts';
import { gitTarget } from '../sync/spec.ts';

export const GITOPS_TOOLS = ['flux', 'argocd'] as const;
export type GitOpsTool = (typeof GITOPS_TOOLS)[number];

export const TEMPLATE_FILES = {
  flux: 'flux-bootstrap.yaml',
  fluxCredentials: 'flux-git-credentials.yaml',
  argocd: 'argocd-application.yaml',
  argocdRepository: 'argocd-repository.yaml',
} as const;
/** Template name (a value of TEMPLATE_FILES) → its text. */
export type Templates = Record<string, string>;

/** One repository folder the DR cluster follows, and who writes it. */
export interface DrTarget {
  url: string;
  branch: string;
  path: string;
  /** The Git credentials Secret (in the Replications' namespace) the writers use, if any. */
  credentialsSecret?: string;
  /** "<namespace>/<name>" of the Replications that write here, with their secrets mode. */
  writers: { replication: string; secretsMode: string }[];
}

export interface GitCredentials {
  username: string;
  password: string;
}

export interface BootstrapOptions {
  tool: GitOpsTool;
  /** "<namespace>/<name>" of the RemoteCluster, for the header and messages. */
  remoteCluster: string;
  /** Base name of the objects (default "dr-syncer"); suffixed per target when there are several. */
  name?: string;
  /** Namespace Flux or Argo CD runs in (default flux-system / argocd). */
  namespace?: string;
  /** Flux: fetch interval of the GitRepository and Kustomization (default 1m). */
  interval?: string;
  /** Flux: the Secret with the age key (default sops-age). */
  sopsSecret?: string;
  /** Argo CD: the AppProject (default "default"). */
  project?: string;
  /** Argo CD: leave spec.replicas of Deployments and StatefulSets to the DR cluster. */
  ignoreReplicas?: boolean;
  /** Credentials per credentials Secret name, only when the user asked for them (--with-credentials). */
  credentials?: Map<string, GitCredentials>;
}

export interface BootstrapOutput {
  /** The manifests as a multi-document YAML stream, with the templates' comments. */
  yaml: string;
  /** The same objects, for a server-side apply. */
  objects: KubeObject[];
  /** What the user still has to do (create the age key Secret, the credentials, …). */
  notes: string[];
}

/** Input the user must fix: names what is wrong and what to do next. */
export class BootstrapError extends Error {}

export const DEFAULT_NAME = 'dr-syncer';
const DEFAULT_NAMESPACE: Record<GitOpsTool, string> = { flux: 'flux-system', argocd: 'argocd' };

/**
 * The repository folders the DR cluster of `rc` must follow: one per distinct URL, branch and
 * path among the Replications (in rc's namespace) that name it as destinationCluster; rc's own
 * spec.git when none does yet.
 */
export function drTargets(rc: RemoteCluster, replications: Replication[]): DrTarget[] {
  const ns = rc.metadata.namespace ?? 'default';
  const rcName = `${ns}/${rc.metadata.name}`;
  const writers = replications.filter((r) => (r.metadata.namespace ?? 'default') === ns && r.spec.destinationCluster === rc.metadata.name);
  const byKey = new Map<string, DrTarget>();
  for (const rep of writers) {
    let t: ReturnType<typeof gitTarget>;
    try {
      t = gitTarget(rep, rc);
    } catch (err) {
      // A Replication without a repository (its own or its RemoteCluster's): the user fixes the spec.
      throw new BootstrapError(`Replication ${ns}/${rep.metadata.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
    const key = targetKey(t);
    const entry = byKey.get(key) ?? { url: t.url, branch: t.branch, path: t.path, credentialsSecret: t.credentialsSecret, writers: [] };
    entry.credentialsSecret ??= t.credentialsSecret;
    entry.writers.push({ replication: `${ns}/${rep.metadata.name}`, secretsMode: rep.spec.secrets?.mode ?? 'Omit' });
    byKey.set(key, entry);
  }
  if (byKey.size === 0) {
    const g = rc.spec.git;
    if (!g?.url) {
      throw new BootstrapError(
        `RemoteCluster ${rcName} has no spec.git and no Replication in namespace ${ns} names it as spec.destinationCluster, ` +
          `so there is no DR repository to follow: set spec.git.url on the RemoteCluster, or create a Replication with destinationCluster: ${rc.metadata.name}`,
      );
    }
    byKey.set('rc', { url: g.url, branch: g.branch ?? 'main', path: g.path ?? '', credentialsSecret: g.credentialsSecretRef?.name, writers: [] });
  }
  return [...byKey.values()].sort((a, b) => targetKey(a).localeCompare(targetKey(b)));
}

const targetKey = (t: Pick<DrTarget, 'url' | 'branch' | 'path'>): string => `${t.url}\n${t.branch}\n${normalPath(t.path)}`;
const normalPath = (p: string): string => p.replace(/^\.?\/+/, '').replace(/\/+$/, '');

/** Object names: the base name alone for one target, else base-<hash of URL, branch and path>. */
export function targetName(base: string, t: DrTarget, count: number): string {
  if (count === 1) return base;
  return `${base}-${createHash('sha256').update(targetKey(t)).digest('hex').slice(0, 8)}`;
}

/** A URL the DR cluster can fetch: http(s) or ssh, never a path on the machine running dr-syncer. */
function checkFetchable(t: DrTarget, rc: string): void {
  if (!/^(https?|ssh):\/\//.test(t.url) && !/^[^/\s]+@[^/\s]+:/.test(t.url)) {
    throw new BootstrapError(
      `the DR repository ${t.url} (written by ${who(t, rc)}) is a local path: the DR cluster's GitOps controller cannot fetch it; ` +
        'point spec.git.url at a Git server both clusters reach',
    );
  }
}

const who = (t: DrTarget, rc: string): string => (t.writers.length ? `Replication ${t.writers.map((w) => w.replication).join(', ')}` : `RemoteCluster ${rc} spec.git`);

export function buildBootstrap(targets: DrTarget[], o: BootstrapOptions, templates: Templates): BootstrapOutput {
  if (targets.length === 0) throw new BootstrapError(`RemoteCluster ${o.remoteCluster}: no DR repository to follow`);
  const base = o.name ?? DEFAULT_NAME;
  const namespace = o.namespace ?? DEFAULT_NAMESPACE[o.tool];
  const docs: Document[] = [];
  const notes: string[] = [];
  for (const t of targets) {
    checkFetchable(t, o.remoteCluster);
    const name = targetName(base, t, targets.length);
    if (o.tool === 'flux') docs.push(...fluxDocs(t, name, namespace, o, templates, notes));
    else docs.push(...argocdDocs(t, name, namespace, o, templates, notes));
  }
  const header =
    `# Generated by: dr-syncer bootstrap ${o.tool} ${o.remoteCluster.split('/')[1] ?? o.remoteCluster}\n` +
    targets.map((t) => `# ${t.url} branch ${t.branch} path ${normalPath(t.path) || '.'}: ${who(t, o.remoteCluster)}\n`).join('');
  return {
    yaml: header + docs.map((d) => `---\n${d.toString({ lineWidth: 0 }).replace(/^---\n/, '')}`).join(''),
    objects: docs.map((d) => d.toJS() as KubeObject),
    notes,
  };
}

function load(templates: Templates, file: string): Document[] {
  const text = templates[file];
  if (text === undefined) throw new Error(`template ${file} is missing`);
  const docs = parseAllDocuments(text);
  for (const d of docs) if (d.errors.length) throw new Error(`template ${file}: ${d.errors[0]!.message}`);
  return docs as Document[];
}

function setMeta(d: Document, name: string, namespace: string): void {
  d.setIn(['metadata', 'name'], name);
  d.setIn(['metadata', 'namespace'], namespace);
}

/** The credentials asked for, or a note telling how to provide them. */
function credentialsFor(t: DrTarget, o: BootstrapOptions, secretRef: string, namespace: string, notes: string[]): GitCredentials | undefined {
  if (!t.credentialsSecret) return undefined;
  const creds = o.credentials?.get(t.credentialsSecret);
  if (!creds) {
    notes.push(
      `${t.url} needs credentials (dr-syncer uses Secret ${o.remoteCluster.split('/')[0]}/${t.credentialsSecret}): create Secret ${namespace}/${secretRef} ` +
        `in the DR cluster (keys ${o.tool === 'flux' ? 'username, password' : 'type: git, url, username, password, label argocd.argoproj.io/secret-type: repository'}; ` +
        'a read-only token as the password is enough), or run again with --with-credentials',
    );
  }
  return creds;
}

function fluxDocs(t: DrTarget, name: string, namespace: string, o: BootstrapOptions, templates: Templates, notes: string[]): Document[] {
  const [repo, ks] = load(templates, TEMPLATE_FILES.flux);
  if (!repo || !ks) throw new Error(`template ${TEMPLATE_FILES.flux} must hold a GitRepository and a Kustomization`);
  const interval = o.interval ?? '1m';
  const secretName = `${name}-git`;
  setMeta(repo, name, namespace);
  repo.setIn(['spec', 'url'], t.url);
  repo.setIn(['spec', 'ref', 'branch'], t.branch);
  repo.setIn(['spec', 'interval'], interval);
  const out = [repo, ks];
  if (t.credentialsSecret) {
    repo.setIn(['spec', 'secretRef', 'name'], secretName);
    const creds = credentialsFor(t, o, secretName, namespace, notes);
    if (creds) {
      const [secret] = load(templates, TEMPLATE_FILES.fluxCredentials);
      setMeta(secret!, secretName, namespace);
      secret!.setIn(['stringData', 'username'], creds.username);
      secret!.setIn(['stringData', 'password'], creds.password);
      out.unshift(secret!);
    }
  } else {
    repo.deleteIn(['spec', 'secretRef']);
  }

  setMeta(ks, name, namespace);
  ks.setIn(['spec', 'sourceRef', 'name'], name);
  ks.setIn(['spec', 'path'], `./${normalPath(t.path)}`);
  ks.setIn(['spec', 'interval'], interval);
  const sops = t.writers.filter((w) => w.secretsMode === 'SOPS');
  if (sops.length) {
    const sopsSecret = o.sopsSecret ?? 'sops-age';
    ks.setIn(['spec', 'decryption', 'secretRef', 'name'], sopsSecret);
    notes.push(
      `Replication ${sops.map((w) => w.replication).join(', ')} writes SOPS-encrypted Secrets: create the age key Secret in the DR cluster: ` +
        `kubectl -n ${namespace} create secret generic ${sopsSecret} --from-file=age.agekey=<age identity file>`,
    );
  } else {
    ks.deleteIn(['spec', 'decryption']);
  }
  plaintextNote(t, notes);
  return out;
}

function argocdDocs(t: DrTarget, name: string, namespace: string, o: BootstrapOptions, templates: Templates, notes: string[]): Document[] {
  const sops = t.writers.filter((w) => w.secretsMode === 'SOPS');
  if (sops.length) {
    throw new BootstrapError(
      `Replication ${sops.map((w) => w.replication).join(', ')} writes Secrets with secrets.mode SOPS, which Argo CD cannot decrypt ` +
        `(the sync of ${t.url} would fail): set secrets.mode Omit and deliver Secrets with External Secrets or Sealed Secrets (docs/gitops.md), ` +
        'or follow this repository with Flux (dr-syncer bootstrap flux)',
    );
  }
  const [app] = load(templates, TEMPLATE_FILES.argocd);
  if (!app) throw new Error(`template ${TEMPLATE_FILES.argocd} must hold an Application`);
  setMeta(app, name, namespace);
  app.setIn(['spec', 'project'], o.project ?? 'default');
  app.setIn(['spec', 'source', 'repoURL'], t.url);
  app.setIn(['spec', 'source', 'targetRevision'], t.branch);
  app.setIn(['spec', 'source', 'path'], normalPath(t.path) || '.');
  if (o.ignoreReplicas) {
    const opts = app.getIn(['spec', 'syncPolicy', 'syncOptions'], true);
    if (!isSeq(opts)) throw new Error(`template ${TEMPLATE_FILES.argocd}: spec.syncPolicy.syncOptions must be a list`);
    opts.add(app.createNode('RespectIgnoreDifferences=true'));
  } else {
    app.deleteIn(['spec', 'ignoreDifferences']);
  }
  const out = [app];
  const secretName = `${name}-repo`;
  const creds = credentialsFor(t, o, secretName, namespace, notes);
  if (creds) {
    const [secret] = load(templates, TEMPLATE_FILES.argocdRepository);
    setMeta(secret!, secretName, namespace);
    secret!.setIn(['stringData', 'url'], t.url);
    secret!.setIn(['stringData', 'username'], creds.username);
    secret!.setIn(['stringData', 'password'], creds.password);
    out.unshift(secret!);
  }
  plaintextNote(t, notes);
  return out;
}

function plaintextNote(t: DrTarget, notes: string[]): void {
  const plain = t.writers.filter((w) => w.secretsMode === 'Plaintext');
  if (plain.length) {
    notes.push(`Replication ${plain.map((w) => w.replication).join(', ')} writes Secrets unencrypted (secrets.mode Plaintext) to ${t.url}: anyone who can read it reads them`);
  }
}

/** Username and password for a GitOps tool from a dr-syncer credentials Secret's data (username/password or token). */
export function credentialsFromSecretData(data: Record<string, string> | undefined, secret: string): GitCredentials {
  const get = (k: string): string | undefined => (data?.[k] ? Buffer.from(data[k], 'base64').toString('utf8') : undefined);
  const token = get('token');
  const password = get('password');
  if (token) return { username: get('username') ?? 'x-access-token', password: token };
  if (password) return { username: get('username') ?? '', password };
  throw new BootstrapError(`Secret ${secret} needs the keys username and password, or token`);
}
