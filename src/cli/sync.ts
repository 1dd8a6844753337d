// `dr-syncer sync`: one sync of a Replication, for people and CI pipelines. It needs no
// controller and no CRDs: the Replication comes from a file and is validated here.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { validateReplication } from '../api/v1alpha1/index.ts';
import { GitRepo, LocalRepositoryError } from '../adapters/git/repo.ts';
import { KubeClient, ONE_SHOT_KUBE_API } from '../adapters/kube/client.ts';
import { runSync, SyncError } from '../sync/engine.ts';
import type { SyncResult } from '../sync/engine.ts';
import { gitTarget, syncSpecFor } from '../sync/spec.ts';
import { withKeptRenderCache } from '../sync/render-cache.ts';
import { cliDigestKey, sopsSealer } from '../sync/secrets.ts';
import { createLogger } from '../util/log.ts';
import { SYNC_HELP } from './sync-help.ts';

function defaultKubeconfig(): string {
  return process.env.KUBECONFIG?.split(path.delimiter)[0] || path.join(os.homedir(), '.kube', 'config');
}

export async function runSyncCommand(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        file: { type: 'string', short: 'f' },
        'source-kubeconfig': { type: 'string' },
        'source-context': { type: 'string' },
        'source-cluster': { type: 'string' },
        repo: { type: 'string' },
        branch: { type: 'string' },
        path: { type: 'string' },
        'cache-dir': { type: 'string' },
        init: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }).values;
  } catch (err) {
    console.error(`${err instanceof Error ? err.message : String(err)}\n\n${SYNC_HELP}`);
    return 2;
  }
  if (args.help) {
    console.log(SYNC_HELP);
    return 0;
  }
  if (!args.file) {
    console.error(`-f <replication.yaml> is required\n\n${SYNC_HELP}`);
    return 2;
  }
  const log = createLogger({ level: args['log-level'] ?? process.env.LOG_LEVEL ?? 'warn' });

  let text: string;
  try {
    text = await fs.promises.readFile(args.file, 'utf8');
  } catch (err) {
    console.error(`cannot read ${args.file}: ${err instanceof Error ? err.message : String(err)}`);
    return 2;
  }
  const docs = parseAllDocuments(text);
  const doc = docs.map((d) => d.toJS() as unknown).find((d) => (d as { kind?: string } | null)?.kind === 'Replication');
  if (!doc) {
    console.error(`${args.file} has no object of kind Replication`);
    return 2;
  }
  // Command-line overrides go into the manifest before validation: --repo satisfies "needs a repository".
  const raw = doc as { spec?: { git?: Record<string, unknown> } };
  if (args.repo || args.branch || args.path) {
    raw.spec = { ...(raw.spec ?? {}) };
    raw.spec.git = { ...(raw.spec.git ?? {}), ...(args.repo ? { url: args.repo } : {}), ...(args.branch ? { branch: args.branch } : {}), ...(args.path ? { path: args.path } : {}) };
  }
  const valid = validateReplication(doc);
  if (!valid.ok) {
    console.error(`${args.file}: invalid Replication:\n${valid.errors.map((e) => `  - ${e}`).join('\n')}`);
    return 2;
  }
  const rep = valid.value;

  let target;
  try {
    target = gitTarget(rep);
  } catch (err) {
    console.error(`${err instanceof Error ? err.message : String(err)} (or pass --repo; the CLI does not read RemoteClusters)`);
    return 2;
  }
  const kubeconfig = args['source-kubeconfig'] ?? defaultKubeconfig();
  let source: KubeClient;
  try {
    source = await KubeClient.fromFile(kubeconfig, args['source-context'], ONE_SHOT_KUBE_API);
  } catch (err) {
    console.error(`cannot use kubeconfig ${kubeconfig}: ${err instanceof Error ? err.message : String(err)}`);
    return 2;
  }
  const sourceCluster = args['source-cluster'] ?? rep.spec.sourceCluster ?? source.contextName;
  const repo = new GitRepo({
    url: target.url,
    branch: target.branch,
    cacheDir: args['cache-dir'] ?? path.join(os.homedir(), '.cache', 'dr-syncer', 'git'),
    create: args.init,
    auth: process.env.DR_SYNCER_GIT_TOKEN
      ? { token: process.env.DR_SYNCER_GIT_TOKEN, username: process.env.DR_SYNCER_GIT_USERNAME }
      : process.env.DR_SYNCER_GIT_USERNAME
        ? { username: process.env.DR_SYNCER_GIT_USERNAME, password: process.env.DR_SYNCER_GIT_PASSWORD ?? '' }
        : undefined,
    log,
  });
  const spec = syncSpecFor(rep, sourceCluster, target);
  if (spec.plan.secretsMode === 'Plaintext') {
    log.warn({ replication: spec.replication }, 'secrets.mode is Plaintext: Secret values are written to Git unencrypted');
  }
  let result: SyncResult;
  try {
    const sealSecrets = spec.plan.secretsMode === 'SOPS' ? sopsSealer(rep.spec.secrets?.sops?.ageRecipients ?? [], await cliDigestKey()) : undefined;
    result = await withKeptRenderCache(repo, spec, log, (renderCache) => runSync(spec, { source, repo, log, sealSecrets, renderCache }));
  } catch (err) {
    const reason = err instanceof SyncError ? `${err.reason}: ` : '';
    console.error(`sync failed: ${reason}${err instanceof Error ? err.message : String(err)}`);
    return isBadInput(err) ? 2 : 1;
  }
  if (args.json) console.log(JSON.stringify(result, null, 2));
  else printSummary(result, target.url);
  return result.errors.length ? 1 : 0;
}

/** Failures the user must fix in what they gave us (exit 2), not a failed sync (exit 1). */
function isBadInput(err: unknown): boolean {
  return err instanceof LocalRepositoryError || (err instanceof SyncError && ['UnknownResourceTypes', 'InvalidSpec'].includes(err.reason));
}

function printSummary(r: SyncResult, url: string): void {
  const out: string[] = [];
  out.push(`namespaces: ${r.namespaces.map((n) => (n.source === n.destination ? n.source : `${n.source} -> ${n.destination}`)).join(', ') || '(none)'}`);
  out.push('objects written:');
  for (const [k, n] of Object.entries(r.counts)) out.push(`  ${k.padEnd(40)} ${n}`);
  if (!Object.keys(r.counts).length) out.push('  (none)');
  if (r.skipped.length) {
    const byReason = new Map<string, number>();
    for (const s of r.skipped) byReason.set(`${s.kind}: ${s.reason}`, (byReason.get(`${s.kind}: ${s.reason}`) ?? 0) + 1);
    out.push('skipped:');
    for (const [reason, n] of [...byReason].sort()) out.push(`  ${String(n).padStart(5)}  ${reason}`);
  }
  for (const w of r.warnings) out.push(`warning: ${w}`);
  for (const e of r.errors) out.push(`error: ${e.message}`);
  const { added, changed, removed } = r.diff;
  out.push(
    r.commit
      ? `committed ${r.commit} to ${url} (${added.length} added, ${changed.length} changed, ${removed.length} removed)`
      : `no changes (DR repository already at ${r.head?.slice(0, 12) ?? 'an empty branch'})`,
  );
  console.log(out.join('\n'));
}
