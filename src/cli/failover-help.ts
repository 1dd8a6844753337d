// `dr-syncer failover --help` and `dr-syncer failback --help`: text only, so they answer at once.
import { CLUSTER_OPTIONS_HELP } from './replication-context.ts';

export const FAILOVER_HELP = `Usage: dr-syncer failover <replication> [options]

Makes the DR cluster the active site for one Replication, as a commit to the DR repository:
every workload gets the replicas the source had (dr-syncer.io/original-replicas) and the
CronJobs that were active at the source resume. The sync from the source stops, so it cannot
undo this, and PVC data copies stop. It sets spec.failover.active on the Replication and waits
for the controller to push the commit (kubectl can do the same: docs/failover.md).

Options:
${CLUSTER_OPTIONS_HELP}
      --cutover            also scale the source workloads to 0 (their counts kept in the
                           annotation, restored at failback), so both sites never run at once;
                           refused while the source cluster does not answer, unless --force
      --force              with --cutover: fail over even if the source cannot be scaled down
      --dry-run            print the commit's diff (and, with --cutover, what the source would
                           get) and change nothing
      --wait <duration>    how long to wait for the controller (default 5m; 0: do not wait)
  -h, --help               this help

Exit codes: 0 failed over (or, with --dry-run, the diff printed), 1 the failover did not
complete (the message says why and what the controller does next), 2 bad input (an unknown
Replication, one already failed over or never synced).`;

export const FAILBACK_HELP = `Usage: dr-syncer failback <replication> [options]

Returns a failed-over Replication to standby, as a commit to the DR repository: the DR
workloads go back to 0 replicas and their CronJobs are suspended. Once the DR cluster runs them
at 0 (Flux or Argo CD applied the commit), source workloads that a --cutover scaled down get
their replicas back, and the sync from the source resumes. With pvc.syncData, the PVC data is
first copied back from the DR cluster to the source (agents must run in the DR cluster: its
RemoteCluster's spec.pvcSync); --force skips that copy (docs/failover.md).

Options:
${CLUSTER_OPTIONS_HELP}
      --force              do not wait for the DR cluster to run its workloads at 0, and do
                           not copy the PVC data back (the next data sync overwrites it)
      --dry-run            print the commit's diff and what the source would get; change nothing
      --wait <duration>    how long to wait for the controller (default 5m; 0: do not wait)
  -h, --help               this help

Exit codes: 0 failed back (or the diff printed), 1 the failback did not complete, 2 bad input
(an unknown Replication, one that is not failed over).`;
