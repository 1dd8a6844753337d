// What the bastion and the rsync endpoint share: an ssh2 server that accepts public keys only
// (read fresh for every attempt, so a rotated-out key stops working at once), refuses every
// request it does not explicitly handle, and logs each connection, authentication and refusal.
import net from 'node:net';
import ssh2 from 'ssh2';
import type { Connection, ParsedKey, ServerChannel, Session } from 'ssh2';
import type { Logger } from '../util/log.ts';
import { authorize } from './keys.ts';

export interface SshServerOptions {
  /** OpenSSH private host key. */
  hostKey: string | Buffer;
  /** The keys allowed in right now (re-read on every attempt). */
  authorizedKeys: () => readonly ParsedKey[];
  log: Logger;
}

export interface ConnectionContext {
  client: Connection;
  log: Logger;
}

/** Handlers for what a server allows; anything without a handler is refused and logged. */
export interface Handlers {
  /** An `exec` request: runs it (resolving when done) or says why it is refused. */
  exec?: (command: string, channel: () => ServerChannel, c: ConnectionContext) => Promise<void> | { refused: string };
  /** A direct-tcpip channel request (ssh -W / ProxyJump). */
  directTcpip?: (info: { destIP: string; destPort: number }, accept: () => ServerChannel, c: ConnectionContext) => boolean;
}

/**
 * ssh2 writes every SSH packet to the socket on its own (one syscall each, three for AES-GCM), and
 * a channel packet holds 32 KiB at most. Corked until the event loop's turn is over, the socket
 * sends what one turn produced in one writev: rsync through the bastion moved ~30% more per second
 * on the 2-core test machine, and AES-GCM (three writes per packet before) became the bastion's
 * cheapest cipher (docs/benchmarks.md, "PVC data path"). Nothing waits longer than the turn.
 */
function coalesceWrites(client: Connection): void {
  // ssh2 keeps the socket in a private field (its own setNoDelay uses it); without it, no change.
  const sock = (client as unknown as { _sock?: unknown })._sock;
  if (!(sock instanceof net.Socket)) return;
  const write = sock.write.bind(sock) as (...args: unknown[]) => boolean;
  let corked = false;
  const uncork = () => {
    corked = false;
    sock.uncork();
  };
  sock.write = ((...args: unknown[]) => {
    if (!corked) {
      corked = true;
      sock.cork();
      setImmediate(uncork);
    }
    return write(...args);
  }) as typeof sock.write;
}

export function createSshServer(opts: SshServerOptions, handlers: Handlers): ssh2.Server {
  return new ssh2.Server({ hostKeys: [opts.hostKey], ident: 'dr-syncer' }, (client, info) => {
    const log = opts.log.child({ remote: `${info.ip}:${info.port}` });
    coalesceWrites(client);
    const c: ConnectionContext = { client, log };
    log.info({ event: 'connect' }, 'connection');
    client.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
      const { ok, fingerprint } = authorize(ctx, opts.authorizedKeys());
      if (!ok) {
        log.warn({ event: 'auth-refused', user: ctx.username, key: fingerprint }, 'public key refused');
        return ctx.reject(['publickey']);
      }
      if (ctx.signature) log.info({ event: 'auth', user: ctx.username, key: fingerprint }, 'authenticated');
      ctx.accept();
    });
    client.on('session', (accept) => {
      const session: Session = accept();
      const refuse = (what: string) => (_accept: unknown, reject?: () => void) => {
        log.warn({ event: 'refused', request: what }, `${what} refused`);
        reject?.();
      };
      session.on('pty', refuse('pty'));
      session.on('shell', refuse('shell'));
      session.on('subsystem', refuse('subsystem'));
      session.on('x11', refuse('x11'));
      session.on('auth-agent', refuse('agent forwarding'));
      session.on('env', (_a, reject) => reject?.());
      session.on('exec', (acceptExec, reject, { command }) => {
        const outcome = handlers.exec ? handlers.exec(command, acceptExec, c) : { refused: 'no commands are allowed' };
        if ('refused' in outcome) {
          log.warn({ event: 'refused', request: 'exec', reason: outcome.refused, command: command.slice(0, 200) }, 'exec refused');
          reject();
          return;
        }
        outcome.catch((err: unknown) => log.error({ err, command: command.slice(0, 200) }, 'exec failed'));
      });
    });
    client.on('tcpip', (accept, reject, { destIP, destPort }) => {
      if (!handlers.directTcpip?.({ destIP, destPort }, accept, c)) {
        log.warn({ event: 'refused', request: 'direct-tcpip', target: `${destIP}:${destPort}` }, 'forwarding refused');
        reject();
      }
    });
    client.on('openssh.streamlocal', (_accept, reject) => {
      log.warn({ event: 'refused', request: 'streamlocal' }, 'forwarding refused');
      reject();
    });
    client.on('request', (_accept, reject, name) => {
      log.warn({ event: 'refused', request: name }, 'global request refused');
      reject?.();
    });
    client.on('error', (err) => log.info({ err: err.message }, 'connection error'));
    client.on('close', () => log.info({ event: 'close' }, 'connection closed'));
  });
}
