// npm run manifests          writes the CRDs generated from src/api/v1alpha1
// npm run manifests:check    exits 1 and names the stale files, writing nothing
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { manifestFiles } from '../src/api/v1alpha1/crds.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');

async function current(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

const stale: string[] = [];
for (const file of manifestFiles()) {
  const abs = join(root, file.path);
  if ((await current(abs)) === file.content) continue;
  stale.push(file.path);
  if (!check) {
    await mkdir(dirname(abs), { recursive: true });
    await writeFile(abs, file.content);
  }
}

if (check) {
  if (stale.length > 0) {
    process.stderr.write(`stale generated files (run npm run manifests):\n${stale.map((p) => `  ${p}\n`).join('')}`);
    process.exit(1);
  }
  process.stdout.write('generated manifests are up to date\n');
} else {
  process.stdout.write(stale.length > 0 ? `wrote ${stale.join(', ')}\n` : 'generated manifests are up to date\n');
}
