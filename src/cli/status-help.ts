// `dr-syncer status --help`: text only, importing nothing heavy, so that it answers at once
// (test/integration/cli-help.test.ts checks what it loads).
import { CLUSTER_OPTIONS_HELP } from './replication-context.ts';

export const STATUS_HELP = `Usage: dr-syncer status [replication...] [options]

The Replications of a namespace (or the ones named) and their measured recovery point: how old
the source state is that the DR cluster actually runs, for objects and for PVC data, and whether
that is within spec.recoveryPointObjective (default 1h). What the DR cluster runs is read live
from its GitOps tool (the Flux Kustomization's status.lastAppliedRevision, or the Argo CD
Application's synced revision) through the destinationCluster RemoteCluster's kubeconfig
Secret, all DR clusters in parallel. When that Secret cannot be read from here or the DR cluster
does not answer in time, the row uses the controller's last measurement (status.recoveryPoint),
marked with * and a footnote saying why. docs/readiness.md explains the measurement.

Columns:
  NAME         the Replication
  MODE         Continuous, Scheduled or Manual ("paused" when spec.paused)
  LAST SYNC    age of the last successful sync ("never")
  LAST COMMIT  the branch tip the last sync left (12 characters)
  APPLIED      the commit the DR cluster's GitOps tool has applied; "-" when it follows the
               folder but has applied nothing yet, "unknown" when it cannot be told (no
               destinationCluster, no GitOps object on the folder, the DR cluster unreachable)
  OBJECTS RP   age of the newest source state of the objects the DR cluster runs
  DATA RP      age of the oldest PVC's last complete copy (its start); "-" without pvc.syncData
  VERDICT      Ready (both within the objective), NotReady (one is older, or not measurable:
               the reason is printed below the table) or Unknown (what the DR cluster runs is
               not known: the reason is printed below the table)

Options:
${CLUSTER_OPTIONS_HELP}
      --max-age <duration> judge against this instead of each spec.recoveryPointObjective
                           (for example 15m, 2h, 1h30m)
      --timeout <duration> how long each DR cluster may take to answer (default 3s)
      --cache-dir <dir>    where DR repositories are cached for the ancestry check of a
                           repository other Replications also write (default
                           ~/.cache/dr-syncer/git); read only when needed
      --json               the same as JSON: {"replications": [...]}, times as RFC 3339, ages
                           in seconds
  -h, --help               this help

Exit codes:
  0  every Replication shown is Ready
  1  at least one is NotReady or Unknown
  2  bad input: an unknown option or Replication, a --max-age that is not a duration, a
     kubeconfig that cannot be used
  3  the Replications could not be read from the controller's cluster`;
