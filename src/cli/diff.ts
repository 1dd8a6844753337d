// `dr-syncer diff <replication>`: what the next sync would commit, as a unified diff, writing
// nothing. The sync itself runs (runSync with dryRun: the same reads, rendering and tree as the
// controller's sync) and stops before the commit, so the diff is exactly the next commit's.
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { isRemoteUrl, LocalRepositoryError } from '../adapters/git/repo.ts';
import { splitUrl } from '../adapters/git/http.ts';
import { KubeApiError } from '../adapters/kube/client.ts';
import type { FileChange } from '../core/patch.ts';
import { unifiedDiff } from '../core/patch.ts';
import { runSync, SyncError } from '../sync/engine.ts';
import type { SyncResult } from '../sync/engine.ts';
import { sopsSealer } from '../sync/secrets.ts';
import type { GitTarget } from '../sync/spec.ts';
import { syncSpecFor } from '../sync/spec.ts';
import { DIFF_HELP } from './diff-help.ts';
import type { ReplicationContext } from './replication-context.ts';
import { CLUSTER_OPTIONS, CommandError, ControllerCluster } from './replication-context.ts';
import { errorMessage as message } from '../util/errors.ts';

/** Exit codes, as kubectl diff's: differences are 1, failures above 1. */
export const EXIT = { same: 0, differ: 1, badInput: 2, failed: 3 } as const;

/** Sync failures that the Replication or its Secrets must fix, not a cluster or the repository. */
const BAD_INPUT_REASONS = new Set(['UnknownResourceTypes', 'InvalidSpec', 'SourceNamespaceNotFound', 'DigestKeyInvalid', 'SecretsModeUnsupported']);


export function exitCodeFor(err: unknown): number {
  if (err instanceof CommandError) return err.exitCode === 2 ? EXIT.badInput : EXIT.failed;
  if (err instanceof LocalRepositoryError) return EXIT.badInput;
  if (err instanceof SyncError && BAD_INPUT_REASONS.has(err.reason)) return EXIT.badInput;
  return EXIT.failed;
}

export type FileStatus = 'A' | 'M' | 'D';
export const statusOf = (c: FileChange): FileStatus => (c.before === undefined ? 'A' : c.after === undefined ? 'D' : 'M');

/** `--stat`: one "<status>\t<path>" line per file, as git diff --name-status. */
export const nameStatus = (changes: readonly FileChange[]): string => changes.map((c) => `${statusOf(c)}\t${c.path}\n`).join('');

/** The URL as status shows it: without credentials. */
export const displayUrl = (url: string): string => (isRemoteUrl(url) ? splitUrl(url).url : url);

export function summaryLine(changes: number, target: GitTarget): string {
  if (changes === 0) return 'no changes: the DR repository is up to date';
  return `${changes} file${changes === 1 ? '' : 's'} would change in ${displayUrl(target.url)} (${target.branch}, ${target.path || 'repository root'})`;
}

export async function runDiffCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        ...CLUSTER_OPTIONS,
        'cluster-name': { type: 'string', default: 'local' },
        'cache-dir': { type: 'string' },
        stat: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    });
  } catch (err) {
    console.error(`${message(err)}\n\n${DIFF_HELP}`);
    return EXIT.badInput;
  }
  const { values: args, positionals } = parsed;
  if (args.help) {
    console.log(DIFF_HELP);
    return EXIT.same;
  }
  const [name, ...extra] = positionals;
  if (!name || extra.length) {
    const what = name ? `unexpected argument${extra.length > 1 ? 's' : ''}: ${extra.join(' ')}` : `which Replication? use: dr-syncer diff <replication> (kubectl -n ${args.namespace} get replications lists them)`;
    console.error(`${what}\n\n${DIFF_HELP}`);
    return EXIT.badInput;
  }
  if (args.stat && args.json) {
    console.error(`--stat and --json: choose one\n\n${DIFF_HELP}`);
    return EXIT.badInput;
  }

  let ctx: ReplicationContext | undefined;
  try {
    const cluster = await ControllerCluster.connect({ namespace: args.namespace, kubeconfig: args.kubeconfig, context: args.context });
    ctx = await cluster.context(name);
    const { result, notes } = await dryRun(ctx, args['cluster-name'], args['cache-dir']);
    return report(ctx, result, notes, args);
  } catch (err) {
    const reason = err instanceof SyncError ? `${err.reason}: ` : '';
    // CommandErrors name their subject already; a sync's failure is prefixed with the Replication.
    console.error(err instanceof CommandError || !ctx ? message(err) : `diff of Replication ${ctx.key} failed: ${reason}${message(err)}`);
    return exitCodeFor(err);
  }
}

/** The sync, up to the commit; `notes` say what makes the next sync differ from this run. */
async function dryRun(ctx: ReplicationContext, clusterName: string, cacheDir: string | undefined): Promise<{ result: SyncResult; notes: string[] }> {
  const { rep, target } = ctx;
  const notes: string[] = [];
  // As the controller names its own cluster (its --cluster-name): the files record it.
  const spec = syncSpecFor(rep, rep.spec.sourceCluster ?? clusterName, target);
  const [source, repo] = await Promise.all([ctx.source(), ctx.repo(cacheDir)]);
  const sealSecrets = spec.plan.secretsMode === 'SOPS' ? sopsSealer(rep.spec.secrets?.sops?.ageRecipients ?? [], await digestKey(ctx, notes)) : undefined;
  if (rep.spec.paused) notes.push(`Replication ${ctx.key} has spec.paused: true: the controller runs no sync until it is false`);
  const failover = rep.status?.failover?.state;
  if (rep.spec.failover?.active || (failover && failover !== 'Standby')) {
    notes.push(`Replication ${ctx.key} is failed over (or failing back): the controller runs no sync until failback completes`);
  }
  const result = await runSync(spec, { source, repo, sealSecrets, dryRun: true });
  return { result, notes };
}

/**
 * The key of the digest that lets unchanged SOPS Secrets keep their files: the controller's, from
 * its Secret. Read only: when it does not exist, the next sync creates it and encrypts every
 * Secret afresh, which a throwaway key shows just as well.
 */
async function digestKey(ctx: ReplicationContext, notes: string[]): Promise<Uint8Array> {
  const ns = ctx.rep.metadata.namespace ?? ctx.cluster.namespace;
  // The controller's name for it (controllers/replication.ts).
  const name = `${ctx.rep.metadata.name}-sops-digest`.slice(0, 253);
  let secret: { data?: { key?: string } };
  try {
    secret = await ctx.cluster.client.get<{ data?: { key?: string } }>(`/api/v1/namespaces/${encodeURIComponent(ns)}/secrets/${encodeURIComponent(name)}`);
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 404) {
      notes.push(`Secret ${ns}/${name} (the SOPS digest key) does not exist yet: the next sync creates it and encrypts every Secret afresh, so every Secret file shows as changed`);
      return randomBytes(32);
    }
    throw new CommandError(`reading Secret ${ns}/${name} (the SOPS digest key of Replication ${ctx.key}) from ${ctx.cluster.client.describe()} failed: ${message(err)}`, 1);
  }
  if (!secret.data?.key) {
    throw new CommandError(`Secret ${ns}/${name} holds the SOPS digest key of Replication ${ctx.key} but has no key "key"; delete it and the controller creates a new one (SOPS Secrets are then encrypted afresh once)`, 2);
  }
  return Buffer.from(secret.data.key, 'base64');
}

function report(ctx: ReplicationContext, r: SyncResult, notes: string[], args: { stat: boolean; json: boolean }): number {
  const changes = r.changes ?? [];
  const patch = unifiedDiff(changes);
  if (args.json) {
    const { target } = ctx;
    console.log(JSON.stringify({
      replication: ctx.key,
      repository: { url: displayUrl(target.url), branch: target.branch, path: target.path },
      head: r.head ?? null,
      files: changes.map((c) => ({ path: c.path, status: statusOf(c) })),
      patch,
      warnings: r.warnings,
      errors: r.errors,
      skipped: r.skipped,
      notes,
    }, null, 2));
  } else {
    process.stdout.write(args.stat ? nameStatus(changes) : patch);
  }
  const err: string[] = [];
  for (const n of notes) err.push(`note: ${n}`);
  for (const w of r.warnings) err.push(`warning: ${w}`);
  for (const e of r.errors) err.push(`the sync would report: ${e.ref}: ${e.message}`);
  err.push(summaryLine(changes.length, ctx.target));
  console.error(err.join('\n'));
  return changes.length ? EXIT.differ : EXIT.same;
}
