// `dr-syncer controller --help`. Kept apart from controller.ts, and importing nothing, so that the
// help answers at once (test/integration/cli-help.test.ts checks what it loads, and that the
// agent image named here is DEFAULT_AGENT_IMAGE).
export const CONTROLLER_HELP = `Usage: dr-syncer controller [options]

Runs the dr-syncer operator: watches RemoteClusters and Replications and keeps the DR
repositories in sync. Every option also reads an environment variable (shown in brackets).

Options:
      --kubeconfig <path>                  cluster the controller runs in [KUBECONFIG]; default in-cluster
      --metrics-bind-address <host:port>   Prometheus /metrics [METRICS_ADDR] (default :8080)
      --health-probe-bind-address <addr>   /healthz and /readyz [PROBE_ADDR] (default :8081)
      --leader-elect                       elect a leader through a Lease [ENABLE_LEADER_ELECTION=true]
      --leader-election-namespace <ns>     namespace of the Lease [LEADER_ELECTION_NAMESPACE, POD_NAMESPACE] (default dr-syncer)
      --leader-election-id <name>          name of the Lease [LEADER_ELECTION_ID] (default dr-syncer.io)
      --workers <n>                        concurrent Replication syncs [WORKERS] (default 4)
      --namespace <ns>                     only this namespace's resources [WATCH_NAMESPACE] (default all)
      --cluster-name <name>                name recorded for the local source cluster [CLUSTER_NAME] (default local)
      --cache-dir <dir>                    Git caches [CACHE_DIR] (default ~/.cache/dr-syncer)
      --kube-api-qps <n>                   client-side requests per second to each cluster [KUBE_API_QPS] (default 20)
      --kube-api-burst <n>                 client-side burst to each cluster [KUBE_API_BURST] (default 30)
      --kube-api-timeout <seconds>         timeout of each Kubernetes request, watches excepted [KUBE_API_TIMEOUT] (default 30)
      --agent-image <image>                PVC-sync agent image for RemoteClusters that do not set pvcSync.image
                                           [AGENT_IMAGE] (default ghcr.io/dr-syncer/dr-syncer-agent:latest)
      --agent-image-pull-policy <policy>   Always|IfNotPresent|Never for the agent and rsync pods [AGENT_IMAGE_PULL_POLICY]
      --agent-pod-env <NAME=value>         extra environment for the agent pods, repeatable; only for clusters whose pods
                                           cannot reach the API through the kubernetes Service (no kube-proxy)
      --max-concurrent-transfers <n>       PVC data transfers at once, all Replications together [MAX_CONCURRENT_TRANSFERS] (default 4)
      --local-pvc-sync <file>              YAML with the PVC-sync settings of this controller's own cluster (the fields of
                                           RemoteCluster.spec.pvcSync; the Helm chart's pvcSync values): with enabled: true
                                           the agents run here, for Replications without spec.sourceCluster [LOCAL_PVC_SYNC]
      --local                              run here in place of the in-cluster controller: first scale the Helm chart's
                                           controller Deployment(s) (labels app.kubernetes.io/name=dr-syncer,
                                           app.kubernetes.io/component=controller) in --local-namespace to 0 and wait
                                           until their pods are gone; on exit, also on Ctrl-C, SIGTERM or a failed start,
                                           give them their replicas back. The count is kept on each Deployment
                                           (annotation dr-syncer.io/local-run-replicas): after a run that was killed,
                                           the next --local run restores it when it ends, or --local-restore does.
                                           Pass --leader-elect too: the in-cluster leader releases its Lease as it stops,
                                           and a pod that lingers or comes back (a scale-up by someone else, a GitOps
                                           tool) then waits for the Lease instead of working alongside this run
      --local-namespace <ns>               namespace of the in-cluster controller [LOCAL_NAMESPACE] (default dr-syncer)
      --local-restore                      only restore what a killed --local run left scaled down, then exit
      --log-level <level>                  fatal|error|warn|info|debug|trace [LOG_LEVEL] (default info)
  -h, --help                               this help`;
