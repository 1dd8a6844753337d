// The agent: an SSH bastion (port 2222 on each source node). It forwards an authenticated
// connection (direct-tcpip, what `ssh -W`/ProxyJump asks for) to an rsync endpoint pod that the
// controller registered for a running operation, and to nothing else. No shell, no exec but the
// `test-connection` health command.
import net from 'node:net';
import type ssh2 from 'ssh2';
import type { SshServerOptions } from './server.ts';
import { createSshServer } from './server.ts';

/** Forwarding targets allowed right now (endpoint pods on this node, registered by the controller). */
export interface AllowList {
  allows(host: string, port: number): boolean;
}

export const HEALTH_COMMAND = 'test-connection';

export function createBastion(opts: SshServerOptions & { allowList: AllowList }): ssh2.Server {
  return createSshServer(opts, {
    exec(command, accept, c) {
      if (command !== HEALTH_COMMAND) return { refused: `only "${HEALTH_COMMAND}" is allowed` };
      const ch = accept();
      c.log.info({ event: 'health' }, 'test-connection');
      ch.write('ok\n');
      ch.exit(0); // the exit status goes before the channel closes
      ch.end();
      return Promise.resolve();
    },
    directTcpip({ destIP, destPort }, accept, c) {
      if (!opts.allowList.allows(destIP, destPort)) return false;
      const target = `${destIP}:${destPort}`;
      c.log.info({ event: 'forward', target }, 'forwarding');
      const ch = accept();
      const sock = net.connect({ host: destIP, port: destPort });
      sock.on('error', (err) => {
        c.log.warn({ target, err: err.message }, 'target connection failed');
        ch.destroy();
      });
      ch.on('error', () => sock.destroy());
      ch.pipe(sock).pipe(ch);
      return true;
    },
  });
}
