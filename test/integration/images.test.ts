// The controller and agent images, built from our Dockerfiles with podman on the local node
// stand-in (test/env/build-images.sh): they answer --help and the agent's healthcheck with a
// read-only root filesystem and no capabilities, run as a non-root user, and carry the compiled
// dist and production dependencies only. Their sizes go to docs/benchmarks.md (printed here).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { before, describe, it } from 'node:test';
import type { BuiltImage } from '../env/images.ts';
import { buildImage } from '../env/images.ts';

const exec = promisify(execFile);
// build-images.sh's podman settings: its own storage and configuration, runc, cgroupfs.
const IMG = path.join(process.env.DR_SYNCER_CACHE ?? path.join(os.homedir(), '.cache', 'dr-syncer'), 'images');
const env = { ...process.env, CONTAINERS_CONF: path.join(IMG, 'podman/containers.conf'), CONTAINERS_STORAGE_CONF: path.join(IMG, 'podman/storage.conf') };
const pkg = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { dependencies: Record<string, string> };
// What npm installs for development only (the lock marks it dev): none of it may be in an image.
// (A package our dependencies need too, e.g. @types/node for @kubernetes/client-node, is not.)
const lock = JSON.parse(fs.readFileSync('package-lock.json', 'utf8')) as { packages: Record<string, { dev?: boolean }> };
const devOnly = Object.entries(lock.packages).filter(([p, v]) => v.dev && /^node_modules\/(@[^/]+\/)?[^/]+$/.test(p)).map(([p]) => p.slice('node_modules/'.length));

async function podman(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return exec('podman', ['--runtime', 'runc', '--cgroup-manager', 'cgroupfs', ...args], { env, maxBuffer: 1 << 24 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
  );
}

/** `podman run` as a restricted pod would: read-only root filesystem, no capabilities, no network. */
const run = (image: BuiltImage, args: string[], entrypoint?: string) =>
  podman(['run', '--rm', '--read-only', '--cap-drop=ALL', '--network=none', ...(entrypoint ? ['--entrypoint', entrypoint] : []), image.ref, ...args]);

let controller: BuiltImage;
let agent: BuiltImage;

before(async () => {
  // One build at a time (build-images.sh takes a lock); the second reuses the first's dependency layers.
  controller = await buildImage('controller');
  agent = await buildImage('agent', 'agent/Dockerfile');
  for (const img of [controller, agent]) {
    if ((await podman(['image', 'exists', img.ref])).code !== 0) assert.equal((await podman(['load', '-q', '-i', img.archive])).code, 0);
  }
});

async function checkImage(image: BuiltImage, name: string): Promise<void> {
  const inspect = JSON.parse((await podman(['image', 'inspect', image.ref])).stdout) as { Size: number; Config: { User?: string } }[];
  assert.equal(inspect[0]!.Config.User, '65532:65532', 'a non-root user is configured');
  const id = await run(image, ['-u'], 'id');
  assert.equal(id.stdout.trim(), '65532', id.stderr);
  // Compiled JavaScript only, no sources; production dependencies only.
  const layout = await run(image, ['-e', `const fs = require('fs');
    const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => e.isDirectory() ? walk(d + '/' + e.name) : [d + '/' + e.name]);
    const has = (n) => fs.existsSync('/app/node_modules/' + n);
    console.log(JSON.stringify({ app: fs.readdirSync('/app').sort(), ts: walk('/app/dist').filter((f) => f.endsWith('.ts') || f.endsWith('.map')),
      dev: ${JSON.stringify(devOnly)}.filter(has), prod: ${JSON.stringify(Object.keys(pkg.dependencies))}.filter((n) => !has(n)) }));`], 'node');
  assert.equal(layout.code, 0, layout.stderr);
  assert.ok(devOnly.includes('typescript') && devOnly.includes('tsx'), 'the lock marks dev-only packages');
  const l = JSON.parse(layout.stdout) as { app: string[]; ts: string[]; dev: string[]; prod: string[] };
  assert.deepEqual(l.app, name === 'controller' ? ['dist', 'node_modules', 'package.json', 'templates'] : ['dist', 'node_modules', 'package.json']);
  assert.deepEqual(l.ts, [], 'no TypeScript sources or source maps');
  assert.deepEqual(l.dev, [], 'no dev dependencies');
  assert.deepEqual(l.prod, [], 'every production dependency');
  console.log(`# image ${name}: ${image.ref}, ${(inspect[0]!.Size / 1e6).toFixed(1)} MB`);
}

describe('images', () => {
  it('controller: --help of every command and version, read-only, no capabilities, non-root, compiled dist and production dependencies only', async () => {
    const top = await run(controller, ['--help']);
    assert.equal(top.code, 0, top.stderr);
    assert.match(top.stdout, /Usage: dr-syncer <command>/);
    for (const cmd of [...top.stdout.split('Commands:\n')[1]!.matchAll(/^ {2}([a-z-]+) {2,}/gm)].map((m) => m[1]!)) {
      const r = await run(controller, [cmd, '--help']);
      assert.equal(r.code, 0, `${cmd}: ${r.stderr}`);
      assert.ok(r.stdout.startsWith(`Usage: dr-syncer ${cmd}`), cmd);
    }
    const v = await run(controller, ['version']);
    assert.equal(v.stdout.trim(), JSON.parse(fs.readFileSync('package.json', 'utf8')).version as string);
    await checkImage(controller, 'controller');
  });

  it('agent: --help, healthcheck (rsync, ssh, SSH code), read-only, no capabilities, non-root, compiled dist and production dependencies only', async () => {
    const help = await run(agent, ['--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /Usage: dr-syncer-agent <bastion\|endpoint\|healthcheck>/);
    const health = await run(agent, ['healthcheck']);
    assert.equal(health.code, 0, health.stdout + health.stderr);
    assert.match(health.stdout, /^rsync: rsync +version/m);
    assert.match(health.stdout, /^ssh: OpenSSH_/m);
    assert.match(health.stdout, /^ssh2: host key made and read back/m);
    // The DR-side rsync Job runs rsync itself (command: in templates/rsync-job.yaml).
    assert.equal((await run(agent, ['--version'], 'rsync')).code, 0);
    await checkImage(agent, 'agent');
  });
});
