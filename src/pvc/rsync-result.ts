// What one rsync run did, from its exit code and `--stats` output: the figures for
// Replication.status.pvcs and metrics, and an honest verdict. The original reported partial
// transfers as success; here 23 (some files could not be transferred) and 24 (files vanished
// during the transfer) are failures, since the DR copy is then not a copy of any moment.

export interface RsyncFigures {
  filesTransferred: number;
  filesTotal: number;
  filesDeleted: number;
  /** Bytes of file data sent (literal data), i.e. what changed. */
  bytesTransferred: number;
  /** Total size of the files in the volume. */
  totalSize: number;
}

export interface RsyncResult {
  ok: boolean;
  exitCode: number;
  figures?: RsyncFigures;
  /** Why it failed, in words a user can act on. */
  message: string;
}

/** rsync(1) EXIT VALUES, the ones worth a sentence. */
const EXIT_MEANINGS: Record<number, string> = {
  1: 'syntax or usage error',
  2: 'protocol incompatibility',
  3: 'errors selecting input/output files or directories',
  5: 'error starting the client-server protocol',
  10: 'error in socket I/O',
  11: 'error in file I/O (is the DR volume full or read-only?)',
  12: 'error in the rsync protocol data stream (the connection broke or the remote command was refused)',
  20: 'received SIGUSR1 or SIGINT',
  23: 'partial transfer: some files could not be read or written',
  24: 'partial transfer: some source files vanished during the transfer',
  30: 'timeout in data send/receive',
  35: 'timeout waiting for the daemon connection',
  255: 'ssh failed (host key, authentication or network)',
};

const num = (s: string | undefined): number => (s === undefined ? 0 : Number(s.replace(/[,.](?=\d{3}\b)/g, '')));

export function parseRsyncStats(stdout: string): RsyncFigures | undefined {
  const get = (re: RegExp) => re.exec(stdout)?.[1];
  const total = get(/^Number of files: ([\d,.]+)/m);
  if (total === undefined) return undefined;
  return {
    filesTotal: num(total),
    filesTransferred: num(get(/^Number of regular files transferred: ([\d,.]+)/m)),
    filesDeleted: num(get(/^Number of deleted files: ([\d,.]+)/m)),
    bytesTransferred: num(get(/^Literal data: ([\d,.]+) bytes/m)),
    totalSize: num(get(/^Total file size: ([\d,.]+) bytes/m)),
  };
}

export function rsyncResult(exitCode: number, stdout: string, stderr = ''): RsyncResult {
  const figures = parseRsyncStats(stdout);
  if (exitCode === 0) return { ok: true, exitCode, figures, message: 'complete' };
  const meaning = EXIT_MEANINGS[exitCode] ?? 'failed';
  const detail = stderr.trim().split('\n').filter((l) => l.trim() !== '').slice(-3).join('; ');
  return { ok: false, exitCode, figures, message: `rsync exited ${exitCode} (${meaning})${detail ? `: ${detail}` : ''}` };
}
