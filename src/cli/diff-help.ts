// `dr-syncer diff --help`. Kept apart from diff.ts, and importing nothing heavy, so that the help
// answers at once (test/integration/cli-help.test.ts checks what it loads): replication-context.ts
// imports only node:os and node:path at its top.
import { CLUSTER_OPTIONS_HELP } from './replication-context.ts';

export const DIFF_HELP = `Usage: dr-syncer diff <replication> [options]

Shows what the next sync of Replication <replication> would commit to its DR repository, as a
unified diff (git's format: "git apply" takes it), and writes nothing: no commit, no push, no
change to any cluster. It runs the sync itself (the source cluster and the repository are read
exactly as the controller reads them, with the Replication's RemoteClusters and the Git
credentials Secret) and stops before the commit.

The diff goes to stdout, a summary line to stderr ("3 files would change in <url> (<branch>,
<path>)" or "no changes: the DR repository is up to date"), with what the sync would warn about.

Exit codes, as kubectl diff:
  0  no differences
  1  differences
  2  bad input: an unknown Replication or RemoteCluster, a missing or incomplete Secret, a
     resource type or source namespace the Replication names that the source does not have
  3  a cluster or the DR repository failed (unreachable, refused, an error while reading)

Options:
${CLUSTER_OPTIONS_HELP}
      --cluster-name <name>
                           the controller's name for its own cluster (its --cluster-name,
                           default local): the source when spec.sourceCluster is not set,
                           recorded in the files as the controller records it
      --cache-dir <dir>    where the repository is cached (default ~/.cache/dr-syncer/git);
                           objects are added there, no branch moves
      --stat               the files only: A (added), M (changed) or D (removed), a tab, the
                           path (as git diff --name-status)
      --json               the result as JSON: the files with their status, the patch, and
                           the warnings and errors the sync would report
  -h, --help               this help

Secrets in mode SOPS: encryption is randomized, so a Secret file shows as changed only when its
Secret changed (a keyed digest tells, as in a sync), and its new ciphertext in the diff is not the
one the sync will write. The digest key is read from the Secret <replication>-sops-digest in the
Replication's namespace, which the controller keeps; when it does not exist yet, every SOPS
Secret shows as changed, as the next sync (which creates the key) encrypts them afresh.

The Replication is read as it is now. While spec.paused is true or the Replication is failed
over, the controller runs no sync: the diff is then what a sync would commit, and a note says so.`;
