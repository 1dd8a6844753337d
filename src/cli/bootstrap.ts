// `dr-syncer bootstrap flux|argocd <remotecluster>`: what the DR cluster needs to follow the DR
// repository that the Replications targeting that RemoteCluster write to. Prints the manifests,
// or applies them server-side to the DR cluster through the RemoteCluster's kubeconfig Secret.
// Heavy modules are imported when needed, so --help answers at once.
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { RemoteCluster, Replication } from '../api/v1alpha1/index.ts';
import { errorMessage as message } from '../util/errors.ts';

export const BOOTSTRAP_HELP = `Usage: dr-syncer bootstrap flux|argocd <remotecluster> [options]

Prints what the DR cluster of RemoteCluster <remotecluster> needs to follow its DR repository
(the URL, branch and path the Replications with destinationCluster: <remotecluster> write to,
or the RemoteCluster's own spec.git when none does yet):
  flux    a GitRepository and a Kustomization (prune; SOPS decryption when a Replication
          writes SOPS Secrets) for Flux's controllers in the DR cluster
  argocd  an Application (automated sync, prune, self-heal) for Argo CD in the DR cluster
With --apply they are applied server-side to the DR cluster instead, through the kubeconfig
Secret of the RemoteCluster (as the controller reaches it). Exits 0 on success, 1 when a
cluster could not be read or written, 2 on bad input. See docs/gitops.md.

Options:
  -n, --namespace <ns>         namespace of the RemoteCluster and its Replications (default dr-syncer)
      --kubeconfig <path>      the cluster the controller runs in, where the RemoteCluster is
                               (default: $KUBECONFIG or ~/.kube/config)
      --context <name>         context of that kubeconfig (default: its current context)
      --apply                  apply to the DR cluster instead of printing
      --with-credentials       also read the Replications' Git credentials Secret and include it as
                               the DR cluster's repository Secret (printed in clear unless --apply);
                               without it, no secret value is read
      --name <name>            name of the objects (default dr-syncer; with several repositories or
                               folders, suffixed with a hash of each)
      --gitops-namespace <ns>  namespace Flux or Argo CD runs in (default flux-system / argocd)
      --interval <duration>    flux: how often to fetch and apply (default 1m)
      --sops-secret <name>     flux: Secret with the age key, key *.agekey (default sops-age)
      --project <name>         argocd: the AppProject (default default)
      --ignore-replicas        argocd: leave spec.replicas of Deployments and StatefulSets to the DR
                               cluster (failover by kubectl scale or an autoscaler); not for
                               failover by Git commit, which it would hide (docs/gitops.md)
  -h, --help                   this help`;

const FIELD_MANAGER = 'dr-syncer-bootstrap';


function defaultKubeconfig(): string {
  return process.env.KUBECONFIG?.split(path.delimiter)[0] || path.join(os.homedir(), '.kube', 'config');
}


export async function runBootstrapCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        namespace: { type: 'string', short: 'n', default: 'dr-syncer' },
        kubeconfig: { type: 'string' },
        context: { type: 'string' },
        apply: { type: 'boolean', default: false },
        'with-credentials': { type: 'boolean', default: false },
        name: { type: 'string' },
        'gitops-namespace': { type: 'string' },
        interval: { type: 'string' },
        'sops-secret': { type: 'string' },
        project: { type: 'string' },
        'ignore-replicas': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    });
  } catch (err) {
    console.error(`${message(err)}\n\n${BOOTSTRAP_HELP}`);
    return 2;
  }
  const { values: args, positionals } = parsed;
  if (args.help) {
    console.log(BOOTSTRAP_HELP);
    return 0;
  }
  const [tool, rcName, ...extra] = positionals;
  const usage = (msg: string): number => {
    console.error(`${msg}\n\n${BOOTSTRAP_HELP}`);
    return 2;
  };
  if (tool !== 'flux' && tool !== 'argocd') return usage(tool ? `unknown GitOps tool "${tool}": use flux or argocd` : 'which GitOps tool? use: dr-syncer bootstrap flux|argocd <remotecluster>');
  if (!rcName) return usage(`which RemoteCluster? use: dr-syncer bootstrap ${tool} <remotecluster> (kubectl get remoteclusters -n ${args.namespace} lists them)`);
  if (extra.length) return usage(`unexpected argument${extra.length > 1 ? 's' : ''}: ${extra.join(' ')}`);
  if (tool === 'flux' && (args.project || args['ignore-replicas'])) return usage('--project and --ignore-replicas are Argo CD options');
  if (tool === 'argocd' && (args.interval || args['sops-secret'])) return usage('--interval and --sops-secret are Flux options');
  if (args.interval !== undefined && !/^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/.test(args.interval)) return usage(`--interval ${args.interval}: use a duration such as 30s, 1m or 1h`);

  try {
    return await bootstrap(tool, rcName, args);
  } catch (err) {
    // BootstrapError: bad input, exit 2 (the module is loaded by now if it was thrown).
    const { BootstrapError } = await import('../gitops/bootstrap.ts');
    console.error(message(err));
    return err instanceof BootstrapError ? 2 : 1;
  }
}

interface Args {
  namespace: string;
  kubeconfig?: string;
  context?: string;
  apply: boolean;
  'with-credentials': boolean;
  name?: string;
  'gitops-namespace'?: string;
  interval?: string;
  'sops-secret'?: string;
  project?: string;
  'ignore-replicas': boolean;
}

async function bootstrap(tool: 'flux' | 'argocd', rcName: string, args: Args): Promise<number> {
  const [{ KubeApiError, KubeClient, ONE_SHOT_KUBE_API, resourcePath }, gitops, { loadBootstrapTemplates }] = await Promise.all([
    import('../adapters/kube/client.ts'),
    import('../gitops/bootstrap.ts'),
    import('../gitops/templates.ts'),
  ]);
  const { BootstrapError } = gitops;
  const ns = args.namespace;
  const kubeconfig = args.kubeconfig ?? defaultKubeconfig();
  let client;
  try {
    client = await KubeClient.fromFile(kubeconfig, args.context, ONE_SHOT_KUBE_API);
  } catch (err) {
    throw new BootstrapError(`cannot use kubeconfig ${kubeconfig}: ${message(err)} (pass --kubeconfig for the cluster the dr-syncer controller runs in)`);
  }
  const api = `/apis/dr-syncer.io/v1alpha1/namespaces/${encodeURIComponent(ns)}`;
  let rc: RemoteCluster;
  try {
    rc = await client.get<RemoteCluster>(`${api}/remoteclusters/${encodeURIComponent(rcName)}`);
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 404) {
      throw new BootstrapError(
        `RemoteCluster ${ns}/${rcName} not found in ${client.describe()}: check the name (kubectl get remoteclusters -A), ` +
          'pass -n <namespace>, or --kubeconfig for the cluster the dr-syncer controller runs in (its CRDs must be installed)',
      );
    }
    throw new Error(`cannot read RemoteCluster ${ns}/${rcName} from ${client.describe()}: ${message(err)}`, { cause: err });
  }
  const reps = (await client.list(`${api}/replications`)).items as unknown as Replication[];
  const targets = gitops.drTargets(rc, reps);

  let credentials: Map<string, { username: string; password: string }> | undefined;
  if (args['with-credentials']) {
    credentials = new Map();
    for (const secret of new Set(targets.map((t) => t.credentialsSecret).filter((s): s is string => !!s))) {
      let obj: { data?: Record<string, string> };
      try {
        obj = await client.get(`/api/v1/namespaces/${encodeURIComponent(ns)}/secrets/${encodeURIComponent(secret)}`);
      } catch (err) {
        if (err instanceof KubeApiError && err.status === 404) {
          throw new BootstrapError(`Secret ${ns}/${secret} (the Git credentials of the DR repository, git.credentialsSecretRef) does not exist; create it, or run without --with-credentials`);
        }
        throw new Error(`cannot read the Git credentials Secret ${ns}/${secret}: ${message(err)}`, { cause: err });
      }
      credentials.set(secret, gitops.credentialsFromSecretData(obj.data, `${ns}/${secret}`));
    }
  }

  const out = gitops.buildBootstrap(
    targets,
    {
      tool,
      remoteCluster: `${ns}/${rcName}`,
      name: args.name,
      namespace: args['gitops-namespace'],
      interval: args.interval,
      sopsSecret: args['sops-secret'],
      project: args.project,
      ignoreReplicas: args['ignore-replicas'],
      credentials,
    },
    await loadBootstrapTemplates(),
  );

  if (!args.apply) {
    process.stdout.write(out.yaml);
    for (const n of out.notes) console.error(`note: ${n}`);
    return 0;
  }

  const { ClusterClients, ClusterError } = await import('../controllers/clusters.ts');
  let dr;
  try {
    dr = await new ClusterClients(client, ONE_SHOT_KUBE_API).forRemoteCluster(rc);
  } catch (err) {
    // A missing or broken kubeconfig Secret is the user's to fix (exit 2); the API failing is not (exit 1).
    if (err instanceof ClusterError) throw new BootstrapError(`RemoteCluster ${ns}/${rcName}: ${message(err)}`);
    throw err;
  }
  const types = await dr.discover().catch((err: unknown) => {
    throw new Error(`the DR cluster (RemoteCluster ${ns}/${rcName}, ${dr.describe()}) did not answer: ${message(err)}`);
  });
  // Every type first: a cluster without one of them gets nothing, not half of it.
  const typed = out.objects.map((o) => {
    const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
    return { o, t: types.find((x) => x.group === group && x.version === version && x.kind === o.kind) };
  });
  const missing = typed.filter((x) => !x.t).map((x) => `${x.o.kind} (${x.o.apiVersion})`);
  if (missing.length) {
    throw new Error(
      `the DR cluster (RemoteCluster ${ns}/${rcName}) does not serve ${[...new Set(missing)].join(', ')}: ` +
        `install ${tool === 'flux' ? 'Flux (its source and kustomize controllers)' : 'Argo CD'} there first, then run this again; nothing was applied`,
    );
  }
  for (const { o, t } of typed as { o: (typeof typed)[number]['o']; t: NonNullable<(typeof typed)[number]['t']> }[]) {
    const target = `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`;
    try {
      await dr.request('PATCH', `${resourcePath(t, o.metadata.namespace, o.metadata.name)}?fieldManager=${FIELD_MANAGER}&force=true`, o, 'application/apply-patch+yaml');
    } catch (err) {
      const hint = err instanceof KubeApiError && err.status === 404 ? ` (does namespace ${o.metadata.namespace} exist in the DR cluster? ${tool === 'flux' ? 'Flux' : 'Argo CD'} runs there)` : '';
      throw new Error(`cannot apply ${target} to the DR cluster (RemoteCluster ${ns}/${rcName}): ${message(err)}${hint}`, { cause: err });
    }
    console.log(`applied ${target}`);
  }
  for (const n of out.notes) console.error(`note: ${n}`);
  return 0;
}
