#!/usr/bin/env node
// dr-syncer-agent: the processes of the PVC data path, one image.
//   bastion      the per-node agent (DaemonSet, port 2222): forwards to registered rsync endpoints
//   endpoint     the temporary pod that mounts a PVC read-only and serves the rsync sender
//   healthcheck  checks, without network, that this image can play its roles (rsync, ssh, SSH code)
// The bastion reads its keys and targets either from the API (--registry: a watched ConfigMap,
// changes apply within a second) or from mounted files re-read for every connection (the kubelet
// swaps them only at its next sync, a minute or more later).
// --help must answer at once: this file imports nothing heavy; the modes import their code when
// they run (test/integration/cli-help.test.ts checks what --help loads).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import type { AllowList } from './bastion.ts';
import type { AgentRegistry } from './registry.ts';
import { runMain } from '../util/process.ts';

// "test-connection" is bastion.ts's HEALTH_COMMAND and "dr-syncer-agent" registry.ts's
// AGENT_CONFIGMAP (written out to keep those modules unloaded; the help test compares them).
const HELP = `Usage: dr-syncer-agent <bastion|endpoint|healthcheck> [options]

  bastion      SSH bastion: public keys only; forwards only to registered rsync endpoints;
               no shell; exec only "test-connection"
  endpoint     exec-only SSH server that runs the rsync sender for paths under --root
  healthcheck  checks, without network, that this image can play its roles: rsync and the OpenSSH
               client run, the SSH code loads and makes a host key; exits 0 when all do, 1 otherwise

Options:
  --listen <host:port>        address to listen on (bastion default 0.0.0.0:2222, endpoint 0.0.0.0:2223);
                              in a pod spec, e.g. --listen $(HOST_IP):2222 with HOST_IP from status.hostIP
  --host-key <file>           OpenSSH private host key (mounted Secret)
  --registry <ns>[/<name>]    bastion: read keys and targets from ConfigMap <name> (default dr-syncer-agent)
                              in namespace <ns>, watched through the API (in-cluster config, or KUBECONFIG);
                              listens only once it has been read; refuses everything while it is missing
                              or the API cannot be reached
  --node-name <name>          bastion with --registry: this node (default $NODE_NAME); only targets
                              registered for it are allowed
  --authorized-keys <file>    authorized_keys file (mounted Secret), re-read per connection
                              (endpoint; bastion without --registry)
  --allow-file <file>         bastion without --registry: targets, one host:port per line, re-read per request
  --root <dir>                endpoint: the mounted volume (default /data)
  --log-level <level>         default info; JSON logs
  -h, --help                  this help`;

function readKeys<K>(file: string, parseAuthorizedKeys: (text: string) => K[]) {
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

/** "<namespace>[/<name>]" of --registry. */
function parseRegistry(value: string, defaultName: string): { namespace: string; name: string } | undefined {
  const [namespace = '', name = defaultName, ...more] = value.split('/');
  const dns = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
  return more.length === 0 && dns.test(namespace) && dns.test(name) ? { namespace, name } : undefined;
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
        'allow-file': { type: 'string' }, registry: { type: 'string' }, 'node-name': { type: 'string' },
        root: { type: 'string', default: '/data' }, 'log-level': { type: 'string' },
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
  if (mode === 'healthcheck') return healthcheck();
  if (mode !== 'bastion' && mode !== 'endpoint') {
    console.error(`unknown mode "${mode}"\n\n${HELP}`);
    return 2;
  }
  const usage = (msg: string): number => {
    console.error(`${msg}\n\n${HELP}`);
    return 2;
  };
  if (!args['host-key']) return usage('--host-key is required');
  const [{ createLogger }, { createBastion }, { createEndpoint }, { parseAuthorizedKeys, publicKeyOf }, { AGENT_CONFIGMAP, AgentRegistry }] = await Promise.all([
    import('../util/log.ts'), import('./bastion.ts'), import('./endpoint.ts'), import('./keys.ts'), import('./registry.ts'),
  ]);
  const registryRef = args.registry === undefined ? undefined : parseRegistry(args.registry, AGENT_CONFIGMAP);
  const nodeName = args['node-name'] ?? process.env.NODE_NAME ?? '';
  if (mode === 'endpoint') {
    if (args.registry !== undefined) return usage('--registry is for the bastion');
    if (!args['authorized-keys']) return usage('--authorized-keys is required');
  } else if (args.registry !== undefined) {
    if (!registryRef) return usage(`--registry "${args.registry}": expected <namespace>[/<name>]`);
    if (args['authorized-keys'] || args['allow-file']) return usage('--registry replaces --authorized-keys and --allow-file: give one or the other');
    if (nodeName === '') return usage('--node-name (or $NODE_NAME) is required with --registry');
  } else if (!args['authorized-keys'] || !args['allow-file']) {
    return usage('--authorized-keys and --allow-file are required (or --registry)');
  }
  const log = createLogger({ level: args['log-level'], name: `dr-syncer-agent-${mode}`, pretty: false });
  const hostKey = fs.readFileSync(args['host-key']);

  // SIGTERM also ends a bastion still waiting for its registry.
  const stopping = new AbortController();
  const onSignal = (): void => stopping.abort(new Error('stopped by signal'));
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  let registry: AgentRegistry | undefined;
  if (registryRef) {
    // In a pod: the in-cluster config (its ServiceAccount token is re-read as it rotates).
    const [{ KubeConfig }, { KubeClient }] = await Promise.all([import('@kubernetes/client-node'), import('../adapters/kube/client.ts')]);
    const kc = new KubeConfig();
    kc.loadFromDefault();
    const client = await KubeClient.fromKubeConfig(kc);
    registry = new AgentRegistry({ client, ...registryRef, nodeName, log });
    registry.start();
    log.info({ registry: `${registryRef.namespace}/${registryRef.name}`, node: nodeName, server: client.server }, 'reading the registry');
    try {
      await registry.ready(stopping.signal);
    } catch (err) {
      await registry.stop();
      if (stopping.signal.aborted) return 0;
      throw err;
    }
  }
  const authorizedKeys = registry ? () => registry.authorizedKeys() : readKeys(args['authorized-keys']!, parseAuthorizedKeys);
  const base = { hostKey, authorizedKeys, log };
  const server = mode === 'bastion' ? createBastion({ ...base, allowList: registry ?? fileAllowList(args['allow-file']!) }) : createEndpoint({ ...base, root: args.root! });
  const [host, port] = (args.listen ?? (mode === 'bastion' ? '0.0.0.0:2222' : '0.0.0.0:2223')).split(/:(?=\d+$)/);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(Number(port), host, () => resolve());
    });
  } catch (err) {
    await registry?.stop();
    throw err;
  }
  log.info({ listen: `${host}:${port}`, hostKey: publicKeyOf(hostKey).fingerprint }, `${mode} listening`);
  if (!stopping.signal.aborted) await new Promise((resolve) => stopping.signal.addEventListener('abort', resolve, { once: true }));
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await registry?.stop();
  return 0;
}

/** The image's own check: what the bastion, the endpoint and the DR-side rsync Job need, no network. */
async function healthcheck(): Promise<number> {
  const checks: [string, () => Promise<string> | string][] = [
    ['rsync', () => firstLine('rsync', ['--version'])],
    ['ssh', () => firstLine('ssh', ['-V'])],
    ['ssh2', async () => {
      const { generateKeyPair, publicKeyOf } = await import('./keys.ts');
      return `host key made and read back (${publicKeyOf(generateKeyPair('healthcheck').privateKey).fingerprint})`;
    }],
  ];
  let failed = 0;
  for (const [name, check] of checks) {
    try {
      console.log(`${name}: ${await check()}`);
    } catch (err) {
      console.log(`${name}: FAILED: ${err instanceof Error ? err.message : String(err)}`);
      failed++;
    }
  }
  return failed ? 1 : 0;
}

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr.trim()}`);
  return (r.stdout.trim() || r.stderr.trim()).split('\n')[0]!; // ssh -V writes to stderr
}

runMain(main);
