#!/usr/bin/env node
// dr-syncer: the command line. Each subcommand lives in its own file and prints its own --help.
import { runControllerCommand } from './controller.ts';
import { runSyncCommand } from './sync.ts';
import { VERSION } from '../version.ts';
import { runMain } from '../util/process.ts';

const HELP = `dr-syncer ${VERSION}: keeps a disaster-recovery cluster ready to take over.

Usage: dr-syncer <command> [options]

Commands:
  controller  run the operator (watches Replications and RemoteClusters)
  sync        run one sync of a Replication into its DR Git repository (no controller needed)
  version     print the version

Run "dr-syncer <command> --help" for a command's options.`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'sync':
      return runSyncCommand(rest);
    case 'controller':
      return runControllerCommand(rest);
    case 'version':
    case '--version':
      console.log(VERSION);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(HELP);
      return cmd === undefined ? 2 : 0;
    default:
      console.error(`unknown command "${cmd}"\n\n${HELP}`);
      return 2;
  }
}

runMain(main);
