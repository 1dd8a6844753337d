// Reads the bootstrap templates (templates/flux-*.yaml, templates/argocd-*.yaml) for the pure
// builder in ./bootstrap.ts.
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TEMPLATE_FILES } from './bootstrap.ts';
import type { Templates } from './bootstrap.ts';

/** templates/ next to src/ (tsx) or dist/src/ (compiled): the first one found going up. */
function templatesDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++, dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'templates', TEMPLATE_FILES.flux))) return path.join(dir, 'templates');
  }
  throw new Error(`templates/${TEMPLATE_FILES.flux} not found next to the program: the installation is incomplete`);
}

export async function loadBootstrapTemplates(): Promise<Templates> {
  const dir = templatesDir();
  const files = Object.values(TEMPLATE_FILES);
  const texts = await Promise.all(files.map((f) => readFile(path.join(dir, f), 'utf8')));
  return Object.fromEntries(files.map((f, i) => [f, texts[i]!]));
}
