// A failover or failback commit: the Replication's folders in the DR repository, their workload
// files rewritten for the new role (core/failover.ts), one commit pushed with compare-and-swap
// (re-read and re-applied when the branch moved). Needs Git alone: it works while the source
// cluster is gone. The controller and `dr-syncer failover --dry-run` call it.
import type { Author, GitRepo } from '../adapters/git/repo.ts';
import { PushConflictError } from '../adapters/git/repo.ts';
import type { FileDiff } from '../core/commit.ts';
import { changeRole, isWorkloadFile, roleCommitMessage } from '../core/failover.ts';
import type { Role, WorkloadChange } from '../core/failover.ts';
import type { FileChange } from '../core/patch.ts';
import { joinPath, normalizeRepoPath, SOURCE_NAMESPACE_LABEL, NAMESPACE_FILE } from '../core/render.ts';
import { parse as parseYaml } from 'yaml';
import type { KubeObject } from '../core/types.ts';
import type { Logger } from '../util/log.ts';
import { silentLogger } from '../util/log.ts';
import { backoff, buildRepoTree, readRepoState } from './engine.ts';

export interface RoleCommitSpec {
  role: Role;
  /** "<namespace>/<name>" of the Replication. */
  replication: string;
  sourceCluster: string;
  path?: string;
  author: Author;
  scaleToZero: boolean;
  requestedBy?: string;
  notes?: string[];
}

export interface RoleCommitDeps {
  repo: GitRepo;
  log?: Logger;
  now?: () => Date;
  maxAttempts?: number;
  signal?: AbortSignal;
  /** Compute the change, write nothing. */
  dryRun?: boolean;
}

/** A workload of the DR repository and where it lives at the source (for a cutover). */
export interface RepoWorkload {
  kind: string;
  name: string;
  destinationNamespace: string;
  sourceNamespace: string;
}

export interface RoleCommitResult {
  /** The new commit; undefined when every workload already had the role (or on a dry run). */
  commit?: string;
  /** The branch tip afterwards. */
  head?: string;
  workloads: WorkloadChange[];
  /** Workloads that have the role afterwards (a retry that finds the commit made counts them from the repository). */
  inRole: number;
  diff: FileDiff;
  /** Old and new content of each changed file (for a dry run's patch). */
  changes: FileChange[];
  /** Every workload in the Replication's folders, whatever its role. */
  all: RepoWorkload[];
  attempts: number;
}

/** Thrown when the Replication has written nothing to the repository: there is nothing to fail over. */
export class NothingToFailOver extends Error {}

export async function commitRole(spec: RoleCommitSpec, deps: RoleCommitDeps): Promise<RoleCommitResult> {
  const log = deps.log ?? silentLogger;
  const parent = normalizeRepoPath(spec.path);
  for (let attempt = 1; ; attempt++) {
    const state = await readRepoState(deps.repo, parent, spec.replication);
    if (state.ownedTrees.size === 0) {
      throw new NothingToFailOver(`the DR repository ${deps.repo.url} (branch ${deps.repo.branch}, path "${parent}") holds no folder of Replication ${spec.replication}: it has not synced yet`);
    }
    const contents = new Map<string, string>();
    const all: RepoWorkload[] = [];
    for (const dest of state.ownedTrees.keys()) {
      const files = await state.filesOf(dest);
      let sourceNamespace = dest;
      for (const [file, oid] of files) {
        if (file === NAMESPACE_FILE) {
          const ns = parseYaml(await deps.repo.readBlob(oid)) as KubeObject | null;
          sourceNamespace = ns?.metadata?.labels?.[SOURCE_NAMESPACE_LABEL] ?? dest;
        }
      }
      for (const [file, oid] of files) {
        if (!isWorkloadFile(file)) continue;
        const content = await deps.repo.readBlob(oid);
        contents.set(`${joinPath(parent, dest)}/${file}`, content);
        const obj = parseYaml(content) as KubeObject | null;
        if (obj?.metadata?.name) all.push({ kind: obj.kind, name: obj.metadata.name, destinationNamespace: dest, sourceNamespace });
      }
    }
    const change = changeRole(contents, spec.role, spec.scaleToZero);
    const changes: FileChange[] = [...change.files].map(([p, after]) => ({ path: p, before: contents.get(p), after }));
    const inRole = changeRole(new Map([...contents, ...change.files]), spec.role === 'active' ? 'standby' : 'active', spec.scaleToZero).workloads.length;
    const base = { workloads: change.workloads, inRole, all, changes, diff: { added: [], changed: [...change.files.keys()].sort(), removed: [] }, attempts: attempt };
    if (change.files.size === 0 || deps.dryRun) return { ...base, head: state.snapshot.commit };

    // Whole folders go to buildTree: unchanged files keep their blobs.
    const folders = new Map<string, Map<string, string>>();
    for (const dest of state.ownedTrees.keys()) {
      const files = await state.filesOf(dest);
      const folder = joinPath(parent, dest);
      if (![...change.files.keys()].some((p) => p.startsWith(`${folder}/`))) continue;
      const m = new Map<string, string>();
      for (const [file, oid] of files) m.set(file, change.files.get(`${folder}/${file}`) ?? contents.get(`${folder}/${file}`) ?? (await deps.repo.readBlob(oid)));
      folders.set(folder, m);
    }
    const tree = await buildRepoTree(deps.repo, state, folders);
    const message = roleCommitMessage({ role: spec.role, replication: spec.replication, sourceCluster: spec.sourceCluster, workloads: change.workloads, requestedBy: spec.requestedBy, notes: spec.notes });
    const commit = await deps.repo.commit(tree, state.snapshot.commit, message, spec.author, (deps.now ?? (() => new Date()))());
    deps.signal?.throwIfAborted();
    try {
      await deps.repo.push(commit, state.snapshot.commit);
      log.info({ commit, role: spec.role, workloads: change.workloads.length }, spec.role === 'active' ? 'failover committed' : 'failback committed');
      return { ...base, commit, head: commit };
    } catch (err) {
      if (!(err instanceof PushConflictError) || attempt >= (deps.maxAttempts ?? 5)) throw err;
      log.info({ attempt, err: err.message }, 'branch moved; applying the role change to the new head');
      await backoff(attempt);
    }
  }
}
