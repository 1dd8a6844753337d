// `--help` answers at once because it loads no dependency: each command's help lives in a module
// that imports nothing heavy, and the command's code is imported only when it runs. Checked by
// what a child process loads: a module hook records every resolved URL.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { HEALTH_COMMAND } from '../../src/agent/bastion.ts';
import { AGENT_CONFIGMAP } from '../../src/agent/registry.ts';
import { DEFAULT_AGENT_IMAGE } from '../../src/pvc/agent.ts';
import { VERSION } from '../../src/version.ts';

const run = promisify(execFile);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-cli-help-'));
const CLI = path.resolve('src/cli/main.ts');
const AGENT = path.resolve('src/agent/main.ts');

// Registered after tsx, so it runs first and sees every URL the program resolves (tsx's own
// modules are loaded before it). Hooks run on their own thread: each URL is appended to a file.
const HOOKS = `import { appendFileSync } from 'node:fs';
let out;
export function initialize(data) { out = data.out; }
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(out, r.url + '\\n');
  return r;
}`;
fs.writeFileSync(path.join(tmp, 'hooks.mjs'), HOOKS);
fs.writeFileSync(path.join(tmp, 'record.mjs'), `import { register } from 'node:module';
register(${JSON.stringify(pathToFileURL(path.join(tmp, 'hooks.mjs')).href)}, { data: { out: process.env.DRS_LOADED } });`);

after(() => fs.promises.rm(tmp, { recursive: true, force: true }));

let n = 0;
async function traced(entry: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string; loaded: string[] }> {
  const out = path.join(tmp, `loaded-${n++}.txt`);
  fs.writeFileSync(out, '');
  const r = await run(process.execPath, ['--import', 'tsx', '--import', pathToFileURL(path.join(tmp, 'record.mjs')).href, entry, ...args], {
    env: { ...process.env, DRS_LOADED: out },
  }).then(
    (x) => ({ code: 0, stdout: x.stdout, stderr: x.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
  );
  return { ...r, loaded: fs.readFileSync(out, 'utf8').split('\n').filter(Boolean) };
}

/** Third-party modules a run loaded (@kubernetes/client-node, isomorphic-git, pino, ssh2, ...). */
const packages = (loaded: string[]) => [...new Set(loaded.filter((u) => u.includes('/node_modules/')).map((u) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u)![1]))];

describe('dr-syncer --help loads nothing heavy', () => {
  it('the top level and every command it lists answer --help with their help text and no dependency', async () => {
    const top = await traced(CLI, ['--help']);
    assert.equal(top.code, 0, top.stderr);
    assert.match(top.stdout, /^dr-syncer .*\n\nUsage: dr-syncer <command>/);
    assert.deepEqual(packages(top.loaded), []);
    const commands = [...top.stdout.split('Commands:\n')[1]!.matchAll(/^ {2}([a-z-]+) {2,}/gm)].map((m) => m[1]!);
    assert.ok(commands.includes('controller') && commands.includes('sync') && commands.includes('version'), commands.join(' '));
    for (const cmd of commands) {
      for (const flag of ['--help', '-h']) {
        const r = await traced(CLI, [cmd, flag]);
        assert.equal(r.code, 0, `${cmd} ${flag}: ${r.stderr}`);
        assert.ok(r.stdout.startsWith(`Usage: dr-syncer ${cmd}`), `${cmd} ${flag}: ${r.stdout.slice(0, 200)}`);
        assert.deepEqual(packages(r.loaded), [], `${cmd} ${flag} loaded dependencies`);
      }
    }
    const v = await traced(CLI, ['version']);
    assert.equal(v.stdout, `${VERSION}\n`);
    assert.deepEqual(packages(v.loaded), []);
  });

  it('the help texts name what the code uses', async () => {
    const ctl = await traced(CLI, ['controller', '--help']);
    assert.ok(ctl.stdout.includes(`(default ${DEFAULT_AGENT_IMAGE})`), 'the default agent image');
    for (const flag of ['--local ', '--local-namespace', '--local-restore', 'dr-syncer.io/local-run-replicas', 'LOCAL_NAMESPACE', '--leader-elect']) assert.ok(ctl.stdout.includes(flag), flag);
    const agent = await traced(AGENT, ['--help']);
    assert.ok(agent.stdout.includes(`exec only "${HEALTH_COMMAND}"`), 'the health command');
    assert.ok(agent.stdout.includes(`(default ${AGENT_CONFIGMAP})`), 'the registry ConfigMap');
  });

  it('a command that runs loads its code (the check sees dependencies when they load)', async () => {
    const r = await traced(CLI, ['sync', '--no-such-flag']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no-such-flag[\s\S]*Usage: dr-syncer sync/);
    for (const p of ['@kubernetes/client-node', 'isomorphic-git', 'pino', 'yaml']) assert.ok(packages(r.loaded).includes(p), p);
  });
});

describe('dr-syncer-agent --help loads nothing heavy', () => {
  it('--help of the agent and of each mode: the help text, no dependency', async () => {
    for (const args of [['--help'], ['-h'], ['bastion', '--help'], ['endpoint', '--help'], ['healthcheck', '--help']]) {
      const r = await traced(AGENT, args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.ok(r.stdout.startsWith('Usage: dr-syncer-agent <bastion|endpoint|healthcheck>'), args.join(' '));
      assert.deepEqual(packages(r.loaded), [], `${args.join(' ')} loaded dependencies`);
    }
  });

  it('healthcheck: rsync, ssh and the SSH code answer, without network', async () => {
    const r = await traced(AGENT, ['healthcheck']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^rsync: rsync +version [\d.]+/m);
    assert.match(r.stdout, /^ssh: OpenSSH_/m);
    assert.match(r.stdout, /^ssh2: host key made and read back \(SHA256:/m);
    assert.ok(packages(r.loaded).includes('ssh2'));
  });

  it('healthcheck fails, naming what is missing, when rsync cannot run', async () => {
    // PATH without rsync: only node's own folder (and ssh's, when it is elsewhere).
    const ssh = (await run('sh', ['-c', 'command -v ssh'])).stdout.trim();
    const bin = path.join(tmp, 'bin');
    fs.mkdirSync(bin, { recursive: true });
    fs.symlinkSync(ssh, path.join(bin, 'ssh'));
    const r = await run(process.execPath, ['--import', 'tsx', AGENT, 'healthcheck'], { env: { ...process.env, PATH: bin } }).then(
      () => ({ code: 0, stdout: '' }),
      (e: { code?: number; stdout?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? '' }),
    );
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^rsync: FAILED: .*ENOENT/m);
    assert.match(r.stdout, /^ssh: OpenSSH_/m);
  });
});
