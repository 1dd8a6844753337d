// dr-syncer's own metrics, next to the controller-runtime ones in the same registry.
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';

export interface SyncMetrics {
  syncDuration: Histogram<'replication' | 'result'>;
  objectsSynced: Gauge<'replication' | 'kind'>;
  lastSuccess: Gauge<'replication'>;
  outOfSync: Gauge<'replication'>;
  commits: Counter<'replication'>;
  pushFailures: Counter<'replication'>;
  pvcBytes: Counter<'replication' | 'pvc'>;
  pvcSyncs: Counter<'replication' | 'pvc' | 'result'>;
  pvcLastSuccess: Gauge<'replication' | 'pvc'>;
  pvcDuration: Histogram<'replication'>;
  clusterHealthy: Gauge<'remotecluster'>;
  agentsReady: Gauge<'source'>;
  agentsDesired: Gauge<'source'>;
  /**
   * The measured recovery point per Replication ("namespace/name"): the source times the DR
   * cluster runs (ms since the epoch); dr_syncer_recovery_point_seconds is their age at scrape
   * time. The readiness reconciler keeps it; an unknown time has no series.
   */
  recoveryPoints: Map<string, { objects?: number; data?: number }>;
  recoveryPoint: Gauge<'replication' | 'kind'>;
  /** Drops every series of a deleted Replication, whatever its other labels. */
  forget(replication: string): Promise<void>;
}

export function createSyncMetrics(registry: Registry): SyncMetrics {
  const registers = [registry];
  const recoveryPoints = new Map<string, { objects?: number; data?: number }>();
  const m = {
    syncDuration: new Histogram({
      name: 'dr_syncer_sync_duration_seconds', help: 'Duration of resource syncs (read source, render, commit, push).',
      labelNames: ['replication', 'result'] as const, buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300], registers,
    }),
    objectsSynced: new Gauge({ name: 'dr_syncer_objects_synced', help: 'Objects written to the DR repository by the last sync, per kind.', labelNames: ['replication', 'kind'] as const, registers }),
    lastSuccess: new Gauge({ name: 'dr_syncer_last_successful_sync_timestamp_seconds', help: 'Unix time of the last successful sync.', labelNames: ['replication'] as const, registers }),
    outOfSync: new Gauge({ name: 'dr_syncer_out_of_sync', help: '1 when the DR repository is known to lag the source (the last sync failed or could not run).', labelNames: ['replication'] as const, registers }),
    commits: new Counter({ name: 'dr_syncer_commits_total', help: 'Commits pushed to DR repositories.', labelNames: ['replication'] as const, registers }),
    pushFailures: new Counter({ name: 'dr_syncer_push_failures_total', help: 'Rejected or failed pushes (a rejected push is retried on the new head).', labelNames: ['replication'] as const, registers }),
    pvcBytes: new Counter({ name: 'dr_syncer_pvc_bytes_transferred_total', help: 'Bytes of PVC data sent by rsync.', labelNames: ['replication', 'pvc'] as const, registers }),
    pvcSyncs: new Counter({ name: 'dr_syncer_pvc_syncs_total', help: 'PVC data transfers, by result (Synced, Failed, Pending, Skipped).', labelNames: ['replication', 'pvc', 'result'] as const, registers }),
    pvcLastSuccess: new Gauge({ name: 'dr_syncer_pvc_last_successful_sync_timestamp_seconds', help: 'Unix time of the last complete copy of a PVC\'s data.', labelNames: ['replication', 'pvc'] as const, registers }),
    pvcDuration: new Histogram({
      name: 'dr_syncer_pvc_sync_duration_seconds', help: 'Duration of complete PVC data transfers (endpoint start to rsync end).',
      labelNames: ['replication'] as const, buckets: [1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600], registers,
    }),
    clusterHealthy: new Gauge({ name: 'dr_syncer_remotecluster_healthy', help: '1 when the RemoteCluster is reachable.', labelNames: ['remotecluster'] as const, registers }),
    agentsReady: new Gauge({ name: 'dr_syncer_agents_ready', help: 'PVC-sync agent pods ready, per source cluster (a RemoteCluster as namespace/name, or the controller\'s --cluster-name).', labelNames: ['source'] as const, registers }),
    agentsDesired: new Gauge({ name: 'dr_syncer_agents_desired', help: 'PVC-sync agent pods that should run (one per selected node), per source cluster.', labelNames: ['source'] as const, registers }),
    recoveryPoint: new Gauge({
      name: 'dr_syncer_recovery_point_seconds',
      help: 'Age of the newest source state the DR cluster runs (kind="objects": the commit its GitOps tool applied; kind="data": the oldest PVC copy), at scrape time. No series while it is not known.',
      labelNames: ['replication', 'kind'] as const, registers,
      collect() {
        this.reset(); // a Replication that went, or whose time became unknown, disappears
        const now = Date.now();
        for (const [replication, t] of recoveryPoints) {
          if (t.objects !== undefined) this.set({ replication, kind: 'objects' }, Math.max(0, (now - t.objects) / 1000));
          if (t.data !== undefined) this.set({ replication, kind: 'data' }, Math.max(0, (now - t.data) / 1000));
        }
      },
    }),
  };
  return {
    ...m,
    recoveryPoints,
    async forget(replication) {
      recoveryPoints.delete(replication);
      for (const metric of [m.syncDuration, m.objectsSynced, m.lastSuccess, m.outOfSync, m.commits, m.pushFailures, m.pvcBytes, m.pvcSyncs, m.pvcLastSuccess, m.pvcDuration]) {
        const { values } = await (metric as unknown as { get(): Promise<{ values: { labels: Record<string, string | number> }[] }> }).get();
        for (const { labels } of values) {
          if (labels.replication !== replication) continue;
          const { le: _bucket, ...series } = labels; // histogram buckets share their series' labels
          (metric as unknown as { remove(l: Record<string, string | number>): void }).remove(series);
        }
      }
    },
  };
}
