#!/usr/bin/env node
// dr-syncer-agent: the processes of the PVC data path, one image, two modes.
//   bastion   the per-node agent (DaemonSet, port 2222): forwards to registered rsync endpoints
//   endpoint  the temporary pod that mounts a PVC read-only and serves the rsync sender
// Keys come from mounted Secrets and are re-read for every connection, so a rotation (the
// kubelet swaps the mounted files) takes effect without a restart.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { createLogger } from '../util/log.ts';
import { createBastion, HEALTH_COMMAND } from './bastion.ts';
import type { AllowList } from './bastion.ts';
import { createEndpoint } from './endpoint.ts';
import { parseAuthorizedKeys, publicKeyOf } from './keys.ts';
import { runMain } from '../util/process.ts';

const HELP = `Usage: dr-syncer-agent <bastion|endpoint> [options]

  bastion   SSH bastion: public keys only; forwards only to registered rsync endpoints;
            no shell; exec only "${HEALTH_COMMAND}"
  endpoint  exec-only SSH server that runs the rsync sender for paths under --root

Options:
  --listen <host:port>        address to listen on (bastion default 0.0.0.0:2222, endpoint 0.0.0.0:2223)
  --host-key <file>           OpenSSH private host key (mounted Secret)
  --authorized-keys <file>    authorized_keys file (mounted Secret), re-read per connection
  --allow-file <file>         bastion: registered targets, one host:port per line, re-read per request
  --root <dir>                endpoint: the mounted volume (default /data)
  --log-level <level>         default info; JSON logs
  -h, --help                  this help`;

function readKeys(file: string) {
  return () => {
    try {
      return parseAuthorizedKeys(fs.readFileSync(file, 'utf8'));
    } catch {
      return []; // no file: nobody gets in
    }
  };
}

function fileAllowList(file: string): AllowList {
  return {
    allows(host, port) {
      let text: string;
      try {
        text = fs.readFileSync(file, 'utf8');
      } catch {
        return false;
      }
      return text.split('\n').some((l) => l.trim() === `${host}:${port}`);
    },
  };
}

export async function main(argv: string[]): Promise<number> {
  const [mode, ...rest] = argv;
  if (mode === undefined || mode === '-h' || mode === '--help') {
    console.log(HELP);
    return mode === undefined ? 2 : 0;
  }
  let args;
  try {
    args = parseArgs({
      args: rest, strict: true,
      options: {
        listen: { type: 'string' }, 'host-key': { type: 'string' }, 'authorized-keys': { type: 'string' },
        'allow-file': { type: 'string' }, root: { type: 'string', default: '/data' }, 'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (err) {
    console.error(`${err instanceof Error ? err.message : String(err)}\n\n${HELP}`);
    return 2;
  }
  if (args.help) {
    console.log(HELP);
    return 0;
  }
  if (mode !== 'bastion' && mode !== 'endpoint') {
    console.error(`unknown mode "${mode}"\n\n${HELP}`);
    return 2;
  }
  if (!args['host-key'] || !args['authorized-keys'] || (mode === 'bastion' && !args['allow-file'])) {
    console.error(`--host-key and --authorized-keys are required${mode === 'bastion' ? ', and --allow-file' : ''}\n\n${HELP}`);
    return 2;
  }
  const log = createLogger({ level: args['log-level'], name: `dr-syncer-agent-${mode}`, pretty: false });
  const hostKey = fs.readFileSync(args['host-key']);
  const base = { hostKey, authorizedKeys: readKeys(args['authorized-keys']), log };
  const server = mode === 'bastion' ? createBastion({ ...base, allowList: fileAllowList(args['allow-file']!) }) : createEndpoint({ ...base, root: args.root! });
  const [host, port] = (args.listen ?? (mode === 'bastion' ? '0.0.0.0:2222' : '0.0.0.0:2223')).split(/:(?=\d+$)/);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(port), host, () => resolve());
  });
  log.info({ listen: `${host}:${port}`, hostKey: publicKeyOf(hostKey).fingerprint }, `${mode} listening`);
  await new Promise<void>((resolve) => {
    for (const s of ['SIGTERM', 'SIGINT'] as const) process.once(s, () => server.close(() => resolve()));
  });
  return 0;
}

runMain(main);
