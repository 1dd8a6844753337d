// The rsync endpoint: the temporary pod that mounts a source PVC (read-only) runs this exec-only
// SSH server. It accepts one command, the sending half of rsync for paths under the mount
// (rsync-command.ts), authorised by the Replication's own key, and runs it without a shell.
import { spawn } from 'node:child_process';
import type ssh2 from 'ssh2';
import { parseRsyncSender } from './rsync-command.ts';
import type { SshServerOptions } from './server.ts';
import { createSshServer } from './server.ts';

export function createEndpoint(opts: SshServerOptions & { root: string; rsync?: string }): ssh2.Server {
  return createSshServer(opts, {
    exec(command, accept, c) {
      const parsed = parseRsyncSender(command, opts.root);
      if (!parsed.ok) return { refused: parsed.reason };
      const ch = accept();
      c.log.info({ event: 'rsync', paths: parsed.paths }, 'rsync sender started');
      const child = spawn(opts.rsync ?? 'rsync', parsed.argv, { cwd: opts.root, stdio: ['pipe', 'pipe', 'pipe'] });
      ch.pipe(child.stdin);
      child.stdout.pipe(ch, { end: false });
      child.stderr.pipe(ch.stderr);
      return new Promise((resolve) => {
        child.on('error', (err) => {
          c.log.error({ err: err.message }, 'cannot start rsync');
          ch.exit(127);
          ch.end();
          resolve();
        });
        child.on('close', (code, signal) => {
          c.log.info({ event: 'rsync-exit', code, signal }, 'rsync sender finished');
          ch.exit(code ?? 128);
          ch.end();
          resolve();
        });
        ch.on('close', () => child.kill('SIGTERM'));
      });
    },
  });
}
