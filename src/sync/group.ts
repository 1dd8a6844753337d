// Group commit for Replications that share a repository branch: a sync waits for the
// repository's lock (GitRepo.exclusive), and every sync that queued meanwhile goes with it into
// one runSyncGroup: a commit per Replication, one push for all. Nothing is held back to make a
// group: the first sync starts at once, the ones that arrive while it runs form the next group.
import type { GitRepo } from '../adapters/git/repo.ts';
import type { GroupSync, SyncResult } from './engine.ts';
import { runSyncGroup } from './engine.ts';

/** At most this many syncs in one push (a bounded pack, and bounded work lost to a rejected push). */
const MAX_GROUP = 50;

interface Waiting {
  job: GroupSync;
  resolve: (r: SyncResult) => void;
  reject: (err: unknown) => void;
}

export class SyncGroups {
  private readonly waiting = new Map<GitRepo, Waiting[]>();

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
