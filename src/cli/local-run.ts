// `dr-syncer controller --local`: a developer runs the controller on their machine in place of the
// in-cluster one (the Helm chart's Deployment), which is scaled to 0 for the time of the run and
// restored however the run ends. The replica count to restore is kept on the Deployment itself
// (an annotation), not in this process: a run that was killed is restored by the next --local run
// when it ends, or by --local-restore.
import { setTimeout as sleep } from 'node:timers/promises';
import { loadKubeConfig } from '../manager.ts';
import { KubeApiError, KubeClient } from '../adapters/kube/client.ts';
import type { Logger } from '../util/log.ts';

export const LOCAL_RUN_ANNOTATION = 'dr-syncer.io/local-run-replicas';
/** The Helm chart's controller Deployment. */
export const IN_CLUSTER_CONTROLLER_SELECTOR = 'app.kubernetes.io/name=dr-syncer,app.kubernetes.io/component=controller';

interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

interface Deployment {
  metadata: { name: string; namespace?: string; annotations?: Record<string, string>; resourceVersion?: string };
  spec: { replicas?: number; selector: LabelSelector };
}

export interface LocalRunOptions {
  /** kubeconfig file of the cluster (default: $KUBECONFIG, ~/.kube/config). */
  kubeconfig?: string;
  /** Namespace of the in-cluster controller. */
  namespace: string;
  /** Only restore what a killed run left scaled down. */
  restoreOnly?: boolean;
  log: Logger;
}

const deploymentsPath = (ns: string, name?: string) => `/apis/apps/v1/namespaces/${encodeURIComponent(ns)}/deployments${name ? `/${encodeURIComponent(name)}` : ''}`;

async function controllers(client: KubeClient, ns: string, signal?: AbortSignal): Promise<Deployment[]> {
  const { items } = await client.list(deploymentsPath(ns), { labelSelector: IN_CLUSTER_CONTROLLER_SELECTOR }, 500, signal);
  return items as unknown as Deployment[];
}

/** Reads, changes and writes back one Deployment; a conflict (someone wrote meanwhile) reads again. */
async function update(client: KubeClient, d: Deployment, change: (d: Deployment) => boolean, signal?: AbortSignal): Promise<void> {
  const at = deploymentsPath(d.metadata.namespace ?? '', d.metadata.name);
  for (let attempt = 0; ; attempt++) {
    const cur = attempt === 0 ? d : await client.get<Deployment>(at, signal);
    if (!change(cur)) return;
    try {
      await client.request('PUT', at, cur, 'application/json', signal);
      return;
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 409) || attempt >= 5) throw err;
    }
  }
}

/**
 * Scales the in-cluster controller to 0, recording each Deployment's count in the annotation.
 * A Deployment that already carries it (a killed run) keeps the count it names.
 */
async function scaleDown(client: KubeClient, ns: string, log: Logger, signal: AbortSignal): Promise<Deployment[]> {
  const deps = await controllers(client, ns, signal);
  if (!deps.length) log.warn({ namespace: ns, selector: IN_CLUSTER_CONTROLLER_SELECTOR }, 'no in-cluster controller Deployment found: nothing to scale down');
  for (const d of deps) {
    let from = '';
    await update(client, d, (cur) => {
      const ann = (cur.metadata.annotations ??= {});
      const recorded = ann[LOCAL_RUN_ANNOTATION] !== undefined;
      ann[LOCAL_RUN_ANNOTATION] ??= String(cur.spec.replicas ?? 1);
      from = ann[LOCAL_RUN_ANNOTATION];
      if (recorded && cur.spec.replicas === 0) return false;
      cur.spec.replicas = 0;
      return true;
    }, signal);
    log.info({ deployment: `${ns}/${d.metadata.name}`, replicas: from }, 'in-cluster controller scaled to 0 for the local run');
  }
  return deps;
}

/** "a=b,c in (d,e)": a Deployment's selector as a label selector query. */
function selectorQuery(s: LabelSelector): string {
  const parts = Object.entries(s.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of s.matchExpressions ?? []) {
    const values = (e.values ?? []).join(',');
    if (e.operator === 'In') parts.push(`${e.key} in (${values})`);
    else if (e.operator === 'NotIn') parts.push(`${e.key} notin (${values})`);
    else if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push(`!${e.key}`);
  }
  return parts.join(',');
}

/** Waits until no pod of the Deployments is left, terminating ones included. */
async function podsGone(client: KubeClient, ns: string, deps: Deployment[], log: Logger, signal: AbortSignal): Promise<void> {
  let told = 0;
  for (;;) {
    const left: string[] = [];
    for (const d of deps) {
      const q = selectorQuery(d.spec.selector);
      if (!q) continue; // an empty selector would be every pod; the API server refuses one anyway
      const { items } = await client.list(`/api/v1/namespaces/${encodeURIComponent(ns)}/pods`, { labelSelector: q }, 500, signal);
      left.push(...items.map((p) => p.metadata?.name ?? '?'));
    }
    if (!left.length) return;
    if (Date.now() - told >= 10_000) {
      log.info({ pods: left }, 'waiting until the in-cluster controller pods are gone (Ctrl-C gives up and restores them)');
      told = Date.now();
    }
    await sleep(500, undefined, { signal });
  }
}

/** Gives every Deployment that carries the annotation its count back and removes the annotation. */
export async function restoreInCluster(client: KubeClient, ns: string, log: Logger): Promise<number> {
  let restored = 0;
  // Each Deployment whatever happens to the others: one that cannot be restored leaves none at 0 behind it.
  const failed: string[] = [];
  for (const d of await controllers(client, ns)) {
    if (d.metadata.annotations?.[LOCAL_RUN_ANNOTATION] === undefined) continue;
    let to = 0;
    try {
      await update(client, d, (cur) => {
        const value = cur.metadata.annotations?.[LOCAL_RUN_ANNOTATION];
        if (value === undefined) return false;
        if (!/^\d+$/.test(value)) throw new Error(`deployment ${ns}/${d.metadata.name}: annotation ${LOCAL_RUN_ANNOTATION}="${value}" is not a replica count: set spec.replicas and remove the annotation by hand`);
        to = Number(value);
        cur.spec.replicas = to;
        delete cur.metadata.annotations![LOCAL_RUN_ANNOTATION];
        return true;
      });
    } catch (err) {
      failed.push(err instanceof Error ? err.message : String(err));
      continue;
    }
    log.info({ deployment: `${ns}/${d.metadata.name}`, replicas: to }, 'in-cluster controller restored');
    restored++;
  }
  if (failed.length) throw new Error(failed.join('; '));
  return restored;
}

const clientFor = (kubeconfig: string | undefined): Promise<KubeClient> => KubeClient.fromKubeConfig(loadKubeConfig(kubeconfig));

/**
 * Runs `body` (the controller) while the in-cluster controller is scaled to 0, and restores it
 * afterwards: on a normal end, on SIGINT/SIGTERM (also while scaling down or waiting), and when
 * `body` fails to start. A kill -9 leaves the annotation for the next run or --local-restore.
 */
export async function runLocal(opts: LocalRunOptions, body: () => Promise<number>): Promise<number> {
  const { namespace: ns, log } = opts;
  let client: KubeClient;
  try {
    client = await clientFor(opts.kubeconfig);
  } catch (err) {
    console.error(`dr-syncer controller --local: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  const restore = async (): Promise<boolean> => {
    try {
      const n = await restoreInCluster(client, ns, log);
      if (opts.restoreOnly && n === 0) log.info({ namespace: ns }, 'nothing to restore: no in-cluster controller Deployment carries the annotation');
      return true;
    } catch (err) {
      console.error(`dr-syncer controller --local: could not restore the in-cluster controller in ${ns} (${client.describe()}): ${err instanceof Error ? err.message : String(err)}\n` +
        `Run "dr-syncer controller --local-restore --local-namespace ${ns}" when the cluster answers.`);
      return false;
    }
  };
  if (opts.restoreOnly) return (await restore()) ? 0 : 1;

  // Until the controller runs, a signal stops the preparation; then the controller handles its own.
  const preparing = new AbortController();
  let phase: 'preparing' | 'running' | 'restoring' = 'preparing';
  const onSignal = (sig: NodeJS.Signals): void => {
    if (phase === 'preparing') preparing.abort(new Error(`stopped by ${sig}`));
    else if (phase === 'restoring') log.warn('restoring the in-cluster controller first');
  };
  // SIGHUP too: a closed terminal or ssh session must give the cluster its controller back.
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  let code: number;
  try {
    const deps = await scaleDown(client, ns, log, preparing.signal);
    await podsGone(client, ns, deps, log, preparing.signal);
    phase = 'running';
    code = await body();
  } catch (err) {
    if (preparing.signal.aborted) {
      log.info('stopped before the controller started');
      code = 0;
    } else {
      console.error(`dr-syncer controller --local: ${err instanceof Error ? err.message : String(err)} (${client.describe()})`);
      code = 1;
    }
  }
  phase = 'restoring';
  const ok = await restore();
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.off('SIGHUP', onSignal);
  return ok ? code : 1;
}
