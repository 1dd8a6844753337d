#!/usr/bin/env node
// dr-syncer: the command line. `--help` must answer at once, so this file and each command's help
// module import nothing heavy (no @kubernetes/client-node, isomorphic-git, pino, ssh2, ...); a
// command's code is imported only when it runs. test/integration/cli-help.test.ts checks both.
import { VERSION } from '../version.ts';
import { runMain } from '../util/process.ts';

interface Command {
  /** One line in `dr-syncer --help`. */
  summary: string;
  /** The command's --help text, from a module that imports nothing heavy. */
  help: () => Promise<string>;
  /** The command itself, imported only when it runs. */
  load: () => Promise<(argv: string[]) => Promise<number>>;
}

/** Every command: add one here (its help in its own light module, its code behind load). */
const COMMANDS: Record<string, Command> = {
  controller: {
    summary: 'run the operator (watches Replications and RemoteClusters); --local runs it on this machine',
    help: async () => (await import('./controller-help.ts')).CONTROLLER_HELP,
    load: async () => (await import('./controller.ts')).runControllerCommand,
  },
  sync: {
    summary: 'run one sync of a Replication into its DR Git repository (no controller needed)',
    help: async () => (await import('./sync-help.ts')).SYNC_HELP,
    load: async () => (await import('./sync.ts')).runSyncCommand,
  },
  diff: {
    summary: 'show what the next sync of a Replication would commit, as a unified diff, writing nothing',
    help: async () => (await import('./diff-help.ts')).DIFF_HELP,
    load: async () => (await import('./diff.ts')).runDiffCommand,
  },
  bootstrap: {
    summary: 'print or apply what a DR cluster needs to follow its DR repository with Flux or Argo CD',
    // bootstrap.ts imports nothing heavy at its top: its code loads the rest when it runs.
    help: async () => (await import('./bootstrap.ts')).BOOTSTRAP_HELP,
    load: async () => (await import('./bootstrap.ts')).runBootstrapCommand,
  },
  status: {
    summary: 'the Replications and their measured recovery point: what the DR cluster runs, and how old it is',
    help: async () => (await import('./status-help.ts')).STATUS_HELP,
    load: async () => (await import('./status.ts')).runStatusCommand,
  },
  failover: {
    summary: 'make the DR cluster the active site for a Replication, as a commit (--cutover, --dry-run)',
    help: async () => (await import('./failover-help.ts')).FAILOVER_HELP,
    load: async () => (await import('./failover.ts')).runFailoverCommand,
  },
  failback: {
    summary: 'return a failed-over Replication to standby, as a commit; the sync resumes',
    help: async () => (await import('./failover-help.ts')).FAILBACK_HELP,
    load: async () => (await import('./failover.ts')).runFailbackCommand,
  },
  version: {
    summary: 'print the version',
    help: () => Promise.resolve('Usage: dr-syncer version\n\nPrints the version of dr-syncer.'),
    load: () => Promise.resolve(() => {
      console.log(VERSION);
      return Promise.resolve(0);
    }),
  },
};

const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length)) + 2;
const HELP = `dr-syncer ${VERSION}: keeps a disaster-recovery cluster ready to take over.

Usage: dr-syncer <command> [options]

Commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}${c.summary}`).join('\n')}

Run "dr-syncer <command> --help" for a command's options.`;

/** -h/--help anywhere before a `--`: the help, without loading the command. */
function wantsHelp(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).some((a) => a === '-h' || a === '--help');
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '--version') return COMMANDS.version!.load().then((run) => run([]));
  if (cmd === 'help' && rest[0] !== undefined && Object.hasOwn(COMMANDS, rest[0])) {
    console.log(await COMMANDS[rest[0]]!.help());
    return 0;
  }
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    console.log(HELP);
    return cmd === undefined ? 2 : 0;
  }
  const command = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!command) {
    console.error(`unknown command "${cmd}"\n\n${HELP}`);
    return 2;
  }
  if (wantsHelp(rest)) {
    console.log(await command.help());
    return 0;
  }
  return (await command.load())(rest);
}

runMain(main);
