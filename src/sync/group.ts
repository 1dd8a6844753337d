// Group commit for Replications that share a repository branch: a sync waits for the
// repository's lock (GitRepo.exclusive), and every sync that queued meanwhile goes with it into
// one runSyncGroup: a commit per Replication, one push for all. A group waits (up to
// MAX_LINGER_MS) only for syncs of the same repository that are still reading their source
// (reading()): 50 Replications made dirty at once then go in a few pushes rather than a lone
// first push and waves after it (bench/replications.bench.ts). A sync with no one reading
// beside it starts at once.
import type { GitRepo } from '../adapters/git/repo.ts';
import type { GroupSync, SyncResult } from './engine.ts';
import { runSyncGroup } from './engine.ts';

/** At most this many syncs in one push (a bounded pack, and bounded work lost to a rejected push). */
const MAX_GROUP = 50;
/** How long a group waits for syncs of the same repository still reading their source. */
const MAX_LINGER_MS = 1500;

interface Waiting {
  job: GroupSync;
  resolve: (r: SyncResult) => void;
  reject: (err: unknown) => void;
}

export class SyncGroups {
  private readonly waiting = new Map<GitRepo, Waiting[]>();
  private readonly readingCount = new Map<GitRepo, number>();
  private readonly wake = new Map<GitRepo, () => void>();

  /** A sync of `repo` is reading its source: a group about to start waits for it a little. The
   * returned function (idempotent) says it has joined (sync()) or given up. */
  reading(repo: GitRepo): () => void {
    this.readingCount.set(repo, (this.readingCount.get(repo) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.readingCount.get(repo) ?? 1) - 1;
      if (n > 0) this.readingCount.set(repo, n);
      else this.readingCount.delete(repo);
      this.wake.get(repo)?.();
    };
  }

  /** Runs `job` (its source read already) with whatever else waits for `repo`. */
  sync(repo: GitRepo, job: GroupSync): Promise<SyncResult> {
    return new Promise((resolve, reject) => {
      const queue = this.waiting.get(repo);
      if (queue) {
        queue.push({ job, resolve, reject });
        return;
      }
      this.waiting.set(repo, [{ job, resolve, reject }]);
      void this.drain(repo);
    });
  }

  private async drain(repo: GitRepo): Promise<void> {
    const queue = this.waiting.get(repo)!;
    while (queue.length) {
      const deadline = performance.now() + MAX_LINGER_MS;
      while ((this.readingCount.get(repo) ?? 0) > 0 && queue.length < MAX_GROUP && performance.now() < deadline) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, deadline - performance.now());
          this.wake.set(repo, () => {
            clearTimeout(t);
            r();
          });
        });
      }
      this.wake.delete(repo);
      await repo.exclusive(async () => {
        const group = queue.splice(0, MAX_GROUP);
        try {
          const results = await runSyncGroup(group.map((w) => w.job), repo);
          results.forEach((r, i) => (r.status === 'fulfilled' ? group[i]!.resolve(r.value) : group[i]!.reject(r.reason)));
        } catch (err) {
          for (const w of group) w.reject(err);
        }
      });
    }
    this.waiting.delete(repo);
  }
}
