// One spelling per repository URL, for comparing the URL dr-syncer writes to with the one a
// GitOps object in the DR cluster fetches. Light (no Git library), so the CLI can use it.
// The replication controller uses the same rule to tell its Git targets apart.
import path from 'node:path';
import { splitUrl } from '../adapters/git/http.ts';

const isHttpUrl = (url: string): boolean => /^https?:\/\//.test(url);

/**
 * The repository a URL names, however it is spelled: no credentials, no trailing "/" or ".git",
 * host in lower case; a local path resolved.
 */
export function canonicalRepoUrl(url: string): string {
  if (!isHttpUrl(url)) return path.resolve(url).replace(/\/+$/, '').replace(/\.git$/, '');
  const u = new URL(splitUrl(url).url);
  u.hostname = u.hostname.toLowerCase();
  return u.toString().replace(/\/+$/, '').replace(/\.git$/, '');
}

/** Whether two URLs name the same repository; a URL that does not parse matches only itself. */
export function sameRepository(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    return canonicalRepoUrl(a) === canonicalRepoUrl(b);
  } catch {
    return false;
  }
}
