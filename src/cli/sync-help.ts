// `dr-syncer sync --help`. Kept apart from sync.ts, and importing nothing, so that the help
// answers at once (test/integration/cli-help.test.ts checks what it loads).
export const SYNC_HELP = `Usage: dr-syncer sync -f <replication.yaml> [options]

Runs one sync of the Replication in the file: reads the source cluster, writes the DR
repository, commits and pushes when something changed. Exits 0 on success, 1 when the sync
failed or some objects could not be written, 2 on bad input.

Options:
  -f, --file <path>               Replication manifest (YAML; the first Replication in it)
      --source-kubeconfig <path>  kubeconfig of the source cluster (default: $KUBECONFIG or ~/.kube/config)
      --source-context <name>     context to use from that kubeconfig (default: its current context)
      --source-cluster <name>     name recorded in commits (default: spec.sourceCluster or the context name)
      --repo <url-or-dir>         DR repository; overrides spec.git.url. A local path must be an
                                  existing repository whose branch is not checked out (a bare one)
      --init                      create a new bare repository at a local --repo path that is
                                  missing or an empty folder
      --branch <name>             branch; overrides spec.git.branch (default main)
      --path <dir>                folder in the repository; overrides spec.git.path
      --cache-dir <dir>           where remote repositories are cached, with what the last sync
                                  rendered, so a resync renders only what changed
                                  (default ~/.cache/dr-syncer/git)
      --json                      print the result as JSON
      --log-level <level>         fatal|error|warn|info|debug|trace|silent (default: $LOG_LEVEL or warn)
  -h, --help                      this help

Git credentials come from the environment: DR_SYNCER_GIT_TOKEN, or DR_SYNCER_GIT_USERNAME and
DR_SYNCER_GIT_PASSWORD. They are never read from the command line, which other users can see.`;
