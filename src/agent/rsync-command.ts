// The one command the rsync endpoint runs: the sending half of rsync, read-only, for paths under
// the mounted volume. Pure: the command line OpenSSH's rsync sends comes in, the argv to spawn
// (never through a shell) or a refusal comes out.
//
// What rsync sends, seen with rsync 3.2/3.5 as the client: `rsync --server --sender
// -logDtpre.iLsfxCIvu [--numeric-ids] [--bwlimit=N] [--inplace] . /data/dir\ with\ space/`. Short
// flags are letters, then `e` and the capability string. Paths escape spaces and shell
// characters with a backslash. Everything else is refused: options that read or write other
// files (--files-from, --log-file, --write-batch, --temp-dir, --backup-dir), that delete source
// data (--remove-source-files), that name another program (--rsh, --rsync-path), and -s
// (--secluded-args), which would move the paths out of the command line where we check them.
import path from 'node:path';

/** Long options the sending side may receive, with their value's shape. */
const LONG_OPTIONS: Readonly<Record<string, RegExp | null>> = {
  '--numeric-ids': null,
  '--inplace': null,
  '--partial': null,
  '--bwlimit': /^\d+(\.\d+)?[KMGkmg]?$/,
  '--timeout': /^\d+$/,
  '--contimeout': /^\d+$/,
};

/** Flags before the capability string: letters, never `s` (secluded args) or `M` (remote options). */
const SHORT_CLUSTER = /^-([A-Za-z]*?)(?:e(\d*\.[A-Za-z]*))?$/;

export type RsyncCommand = { ok: true; argv: string[]; paths: string[] } | { ok: false; reason: string };

/** Splits on unescaped spaces and removes the backslash escapes rsync adds. */
function splitEscaped(command: string): string[] | undefined {
  const out: string[] = [];
  let cur = '';
  let started = false;
  for (let i = 0; i < command.length; i++) {
    const c = command[i]!;
    if (c === '\\') {
      if (i + 1 >= command.length) return undefined;
      cur += command[++i];
      started = true;
    } else if (c === ' ') {
      if (started) out.push(cur);
      cur = '';
      started = false;
    } else if (c === '\n' || c === '\r' || c === '\0') {
      return undefined;
    } else {
      cur += c;
      started = true;
    }
  }
  if (started) out.push(cur);
  return out;
}

/**
 * Checks `command` against the sender-only shape and confines its paths to `root`. Returns the
 * argv for spawning `rsync` (without the program name).
 */
export function parseRsyncSender(command: string, root: string): RsyncCommand {
  const words = splitEscaped(command);
  if (!words) return { ok: false, reason: 'malformed command (control characters or a trailing backslash)' };
  if (words[0] !== 'rsync' || words[1] !== '--server' || words[2] !== '--sender') {
    return { ok: false, reason: 'only "rsync --server --sender …" is allowed' };
  }
  const argv = ['--server', '--sender'];
  let i = 3;
  for (; i < words.length && words[i] !== '.'; i++) {
    const w = words[i]!;
    if (w.startsWith('--')) {
      const [name, value] = w.includes('=') ? [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)] : [w, undefined];
      if (!(name! in LONG_OPTIONS)) return { ok: false, reason: `option ${name} is not allowed` };
      const shape = LONG_OPTIONS[name!];
      if (shape === null ? value !== undefined : value === undefined || !shape!.test(value)) return { ok: false, reason: `option ${w} is not allowed` };
      argv.push(w);
      continue;
    }
    const m = SHORT_CLUSTER.exec(w);
    if (!m) return { ok: false, reason: `argument ${JSON.stringify(w)} is not an rsync flag` };
    if (/[sM]/.test(m[1]!)) return { ok: false, reason: `flag -${/[sM]/.exec(m[1]!)![0]} is not allowed` };
    argv.push(w);
  }
  if (words[i] !== '.') return { ok: false, reason: 'no source path' };
  const paths = words.slice(i + 1);
  if (paths.length === 0) return { ok: false, reason: 'no source path' };
  const base = path.posix.normalize(root).replace(/\/+$/, '') || '/';
  for (const p of paths) {
    if (!p.startsWith('/')) return { ok: false, reason: `path ${JSON.stringify(p)} must be absolute` };
    const n = path.posix.normalize(p);
    if (p.split('/').includes('..') || !(n === base || n === `${base}/` || n.startsWith(`${base}/`))) {
      return { ok: false, reason: `path ${JSON.stringify(p)} is outside ${base}` };
    }
  }
  return { ok: true, argv: [...argv, '.', ...paths], paths };
}
