// A TCP proxy in front of a real API server, for tests of a cluster that stops answering or is slow:
// blackhole() kills the open connections and lets new ones hang (accepted, never answered), as
// a dropped route does; restore() forwards again. TLS passes through untouched (the test API
// server's certificate is valid for 127.0.0.1, whatever the port).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export interface Proxy {
  port: number;
  /** Holds every chunk the server sends for `ms` before passing it on (0: none), as a slow link does. */
  delay(ms: number): void;
  blackhole(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startProxy(targetPort: number): Promise<Proxy> {
  let dark = false;
  let delayMs = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    sockets.add(inbound);
    inbound.on('close', () => sockets.delete(inbound));
    inbound.on('error', () => {});
    if (dark) return; // accept, never answer
    const outbound = net.connect(targetPort, '127.0.0.1');
    sockets.add(outbound);
    outbound.on('close', () => sockets.delete(outbound));
    outbound.on('error', () => inbound.destroy());
    inbound.on('error', () => outbound.destroy());
    inbound.pipe(outbound);
    // In order: while a chunk is held, nothing more is read from the server (and its end waits).
    let held = false;
    let ended = false;
    outbound.on('data', (chunk: Buffer) => {
      if (delayMs <= 0) {
        // As pipe() would: the client's backpressure reaches the server.
        if (!inbound.write(chunk)) {
          outbound.pause();
          inbound.once('drain', () => outbound.resume());
        }
        return;
      }
      held = true;
      outbound.pause();
      setTimeout(() => {
        inbound.write(chunk);
        held = false;
        if (ended) inbound.end();
        else outbound.resume();
      }, delayMs);
    });
    outbound.on('end', () => {
      if (held) ended = true;
      else inbound.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    delay(ms) {
      delayMs = ms;
    },
    blackhole() {
      dark = true;
      for (const s of sockets) s.destroy();
    },
    restore() {
      dark = false;
      for (const s of sockets) s.destroy(); // the hanging ones: clients reconnect through the live path
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A copy of `kubeconfigPath` whose server is the proxy (written next to it). */
export function kubeconfigVia(kubeconfigPath: string, proxy: Proxy): string {
  const text = fs.readFileSync(kubeconfigPath, 'utf8').replace(/server: https:\/\/127\.0\.0\.1:\d+/, `server: https://127.0.0.1:${proxy.port}`);
  const out = path.join(path.dirname(kubeconfigPath), `kubeconfig-via-${proxy.port}`);
  fs.writeFileSync(out, text, { mode: 0o600 });
  return out;
}
