// `dr-syncer failover` and `dr-syncer failback`: thin clients of the controller. They check the
// request, set spec.failover on the Replication (with its resourceVersion: a concurrent change
// of its spec is refused, not overwritten) and follow status.failover until the controller is done. The
// controller does the work, so kubectl can ask for the same thing. --dry-run computes the commit
// with the controller's own code and writes nothing.
import os from 'node:os';
import { parseArgs } from 'node:util';
import type { Replication } from '../api/v1alpha1/index.ts';
import type { KubeObject } from '../core/types.ts';
import { FAILBACK_HELP, FAILOVER_HELP } from './failover-help.ts';
import type { ReplicationContext } from './replication-context.ts';
import { CLUSTER_OPTIONS, CommandError, ControllerCluster } from './replication-context.ts';
import { errorMessage as message } from '../util/errors.ts';

type Action = 'failover' | 'failback';

export const runFailoverCommand = (argv: string[]): Promise<number> => run('failover', argv);
export const runFailbackCommand = (argv: string[]): Promise<number> => run('failback', argv);

async function run(action: Action, argv: string[]): Promise<number> {
  const help = action === 'failover' ? FAILOVER_HELP : FAILBACK_HELP;
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        ...CLUSTER_OPTIONS,
        ...(action === 'failover' ? { cutover: { type: 'boolean', default: false } } : {}),
        force: { type: 'boolean', default: false },
        'dry-run': { type: 'boolean', default: false },
        wait: { type: 'string', default: '5m' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    console.error(`${message(err)}\n\n${help}`);
    return 2;
  }
  const { values: args, positionals } = parsed;
  if (args.help) {
    console.log(help);
    return 0;
  }
  if (positionals.length !== 1) {
    console.error(`dr-syncer ${action} needs exactly one Replication name\n\n${help}`);
    return 2;
  }
  const { parseDuration } = await import('../controllers/schedule.ts');
  const waitMs = args.wait === '0' ? 0 : parseDuration(args.wait, -1);
  if (waitMs < 0) {
    console.error(`--wait ${args.wait}: not a duration (for example 90s, 5m or 0)`);
    return 2;
  }
  try {
    const cluster = await ControllerCluster.connect({ namespace: args.namespace, kubeconfig: args.kubeconfig, context: args.context });
    const ctx = await cluster.context(positionals[0]!);
    checkState(action, ctx.rep, ctx.key);
    const cutover = action === 'failover' && (args as { cutover?: boolean }).cutover === true;
    if (args['dry-run']) return await dryRun(action, ctx, cutover, args.force === true);
    return await request(action, ctx, { cutover, force: args.force === true, waitMs });
  } catch (err) {
    if (err instanceof CommandError) {
      console.error(err.message);
      return err.exitCode;
    }
    throw err;
  }
}

const failedOver = (rep: Replication): boolean => rep.spec.failover?.active === true;
const failoverBusy = (rep: Replication): boolean => {
  const s = rep.status?.failover?.state;
  return s !== undefined && s !== 'Standby';
};

/** Refuses what makes no sense now, before anything is written. */
function checkState(action: Action, rep: Replication, key: string): void {
  const st = rep.status?.failover;
  if (action === 'failover') {
    if (failedOver(rep)) {
      throw new CommandError(`Replication ${key} is already failed over${st?.failoverTime ? ` (since ${st.failoverTime}, commit ${st.failoverCommit?.slice(0, 12)})` : ''}; \`dr-syncer failback ${rep.metadata.name}\` returns it to standby`, 2);
    }
    if (failoverBusy(rep)) throw new CommandError(`Replication ${key} is still failing back (${st?.message ?? st?.state}); wait until status.failover.state is Standby`, 2);
    if (!rep.status?.lastCommit) throw new CommandError(`Replication ${key} has not synced yet: the DR repository holds nothing of it to fail over`, 2);
  } else if (!failedOver(rep) && !failoverBusy(rep)) {
    throw new CommandError(`Replication ${key} is not failed over (spec.failover.active is not true); nothing to fail back`, 2);
  }
}

async function dryRun(action: Action, ctx: ReplicationContext, cutover: boolean, force: boolean): Promise<number> {
  const [{ commitRole }, { unifiedDiff }] = await Promise.all([import('../sync/failover.ts'), import('../core/patch.ts')]);
  const repo = await ctx.repo();
  const rep = ctx.rep;
  let r;
  try {
    r = await commitRole({
      role: action === 'failover' ? 'active' : 'standby', replication: ctx.key, sourceCluster: rep.spec.sourceCluster ?? 'local', path: ctx.target.path,
      author: { name: 'dr-syncer', email: 'dr-syncer@localhost' }, scaleToZero: rep.spec.scaleToZero ?? true,
    }, { repo, dryRun: true });
  } catch (err) {
    throw new CommandError(`reading the DR repository ${ctx.target.url} (branch ${ctx.target.branch}) failed: ${message(err)}`, 1);
  }
  process.stdout.write(unifiedDiff(r.changes));
  const lines = [`${action} of ${ctx.key} (dry run, nothing written): ${r.workloads.length} workload(s) would change in ${ctx.target.url} (branch ${ctx.target.branch}, path "${ctx.target.path}")`];
  for (const w of r.workloads) lines.push(`  ${w.kind} ${w.namespace}/${w.name}: ${w.from} -> ${w.to}`);
  if (cutover || action === 'failback') {
    const { KubeApiError } = await import('../adapters/kube/client.ts');
    const { restoreStep } = await import('../controllers/failover.ts');
    try {
      const source = await ctx.source();
      for (const w of r.all.filter((x) => x.kind !== 'CronJob')) {
        const p = `/apis/apps/v1/namespaces/${encodeURIComponent(w.sourceNamespace)}/${w.kind === 'Deployment' ? 'deployments' : 'statefulsets'}/${encodeURIComponent(w.name)}`;
        let o;
        try {
          o = await source.get<KubeObject>(p);
        } catch (err) {
          if (err instanceof KubeApiError && err.status === 404) continue;
          throw err;
        }
        const n = (o.spec as { replicas?: number } | undefined)?.replicas ?? 1;
        if (action === 'failover' && n > 0) lines.push(`  source ${w.kind} ${w.sourceNamespace}/${w.name}: replicas ${n} -> 0`);
        const step = action === 'failback' ? restoreStep(w.kind, o, ctx.key) : undefined;
        if (step && 'change' in step) lines.push(`  source ${w.kind} ${w.sourceNamespace}/${w.name}: ${step.change}`);
        if (step && 'otherReplication' in step) lines.push(`  source ${w.kind} ${w.sourceNamespace}/${w.name}: left as it is (scaled down by ${step.otherReplication}'s cutover)`);
      }
    } catch (err) {
      const why = err instanceof CommandError ? err.message : `the source cluster does not answer: ${message(err)}`;
      lines.push(action === 'failover' && !force ? `  the cutover would be refused: ${why} (--force fails over without it)` : `  the source cannot be read: ${why}`);
    }
  }
  console.error(lines.join('\n'));
  return 0;
}

async function request(action: Action, ctx: ReplicationContext, o: { cutover: boolean; force: boolean; waitMs: number }): Promise<number> {
  const requestedBy = `${os.userInfo().username}@${os.hostname()}`;
  const failover = action === 'failover'
    ? { active: true, cutover: o.cutover, force: o.force, requestedBy }
    : { active: false, cutover: null, force: o.force, requestedBy };
  let updated: Replication;
  try {
    updated = await setFailover(ctx, ctx.rep, failover);
  } catch (err) {
    if (err instanceof CommandError) throw err;
    throw new CommandError(`setting spec.failover on Replication ${ctx.key} failed: ${message(err)}`, 1);
  }
  console.error(`${action} of ${ctx.key} requested (spec.failover.active: ${action === 'failover'}, generation ${updated.metadata.generation})`);
  if (o.waitMs === 0) return 0;
  return follow(action, ctx, updated.metadata.generation ?? 0, o.waitMs);
}

/**
 * Sets spec.failover on the Replication as `read` (its resourceVersion: a concurrent change is
 * refused, not overwritten). A conflict with the same generation is the controller writing its
 * status (it does while it syncs), not a change of the spec this command checked: set on that
 * version, if `stillSo` of the status as it is now (what the command decided on still holds).
 */
export async function setFailover(ctx: ReplicationContext, read: Replication, failover: Record<string, unknown> | null, stillSo: (now: Replication) => boolean = () => true): Promise<Replication> {
  const { KubeApiError } = await import('../adapters/kube/client.ts');
  const path = ctx.cluster.replicationPath(read.metadata.name);
  let rep = read;
  for (let attempt = 1; ; attempt++) {
    try {
      return await ctx.cluster.client.request<Replication>('PATCH', path, { metadata: { resourceVersion: rep.metadata.resourceVersion }, spec: { failover } }, 'application/merge-patch+json');
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 409)) throw err;
      const now = await ctx.cluster.replication(read.metadata.name);
      if (now.metadata.generation !== read.metadata.generation || !stillSo(now) || attempt >= 5) throw new CommandError(`Replication ${ctx.key} changed while this command ran; run it again`, 1);
      rep = now;
    }
  }
}

/** Follows the controller's status until the action is done, failed, or the wait is over. */
async function follow(action: Action, ctx: ReplicationContext, generation: number, waitMs: number): Promise<number> {
  const deadline = Date.now() + waitMs;
  let said = '';
  for (;;) {
    const rep = await ctx.cluster.replication(ctx.rep.metadata.name);
    const st = rep.status?.failover;
    const ready = rep.status?.conditions?.find((c) => c.type === 'Ready');
    const current = (ready?.observedGeneration ?? 0) >= generation;
    if (current && st?.message && st.message !== said) {
      said = st.message;
      console.error(`  ${st.message}`);
    }
    if (current && action === 'failover' && st?.state === 'FailedOver' && ready?.status === 'True') {
      console.log(`failed over: commit ${st.failoverCommit ?? '(none)'}; ${st.workloads ?? 0} workload(s) active in the DR repository${st.sourceScaledDown ? '; the source was scaled down' : ''}`);
      return 0;
    }
    if (current && action === 'failback' && st?.state === 'Standby') {
      console.log(`failed back: commit ${st.failbackCommit ?? '(none)'}; the DR cluster is on standby and syncs resumed`);
      const back = st.dataCopyBack;
      if (rep.spec.pvc?.syncData) console.error(back?.phase === 'Copied' ? `PVC data copied back to the source: ${back.message ?? ''}` : `note: ${back?.message ?? 'PVC data was NOT copied back'} (docs/failover.md)`);
      return 0;
    }
    if (current && ready?.status === 'False' && ['CutoverRefused', 'NothingToFailOver'].includes(ready.reason)) {
      // Refused before anything was changed: the request is withdrawn, so it does not happen later
      // by surprise; not if, meanwhile, the controller went on with it (a retry that worked).
      const stillRefused = (now: Replication) => {
        const c = now.status?.conditions?.find((x) => x.type === 'Ready');
        return (c?.observedGeneration ?? 0) >= generation && c?.status === 'False' && c.reason === ready.reason;
      };
      await setFailover(ctx, rep, null, stillRefused)
        .catch((err: unknown) => console.error(`withdrawing the request failed (${message(err)}): set spec.failover.active to false by hand`));
      console.error(`${action} of ${ctx.key} refused, nothing was changed, the request is withdrawn: ${ready.message}`);
      return 1;
    }
    if (Date.now() >= deadline) {
      console.error(`${action} of ${ctx.key} not complete after ${Math.round(waitMs / 1000)}s: ${ready?.message ?? 'the controller has not answered (is it running?)'}. ` +
        `The request stands; follow it with: kubectl -n ${ctx.cluster.namespace} get replication ${ctx.rep.metadata.name} -o jsonpath='{.status.failover}'`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
