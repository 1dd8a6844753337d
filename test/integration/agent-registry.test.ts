// The agent's registry read from the API: a real kube-apiserver, our bastion on loopback, Debian's
// OpenSSH `ssh` as the client and a TCP echo server as the "rsync endpoint". Key rotation, target
// registration, another node's targets, malformed entries, a deleted ConfigMap, a broken watch and
// an API server unreachable at start; and the agent process itself (`bastion --registry`), which
// must not listen before it has read its registry.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type ssh2 from 'ssh2';
import { KubeClient } from '../../src/adapters/kube/client.ts';
import { createBastion } from '../../src/agent/bastion.ts';
import type { KeyPair } from '../../src/agent/keys.ts';
import { generateKeyPair } from '../../src/agent/keys.ts';
import { AgentRegistry, AUTHORIZED_KEYS_KEY, targetEntry, targetKey, TARGET_KEY_PREFIX } from '../../src/agent/registry.ts';
import type { AgentRegistryOptions } from '../../src/agent/registry.ts';
import { startCluster, type TestCluster } from '../env/cluster.ts';
import { kubeconfigVia, startProxy } from '../env/proxy.ts';

const NS = 'dr-syncer';
const NODE = 'node-a';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-agent-registry-'));
const logs: Record<string, unknown>[] = [];
const log = pino({ level: 'debug' }, new Writable({ write(chunk: Buffer, _e, cb) { logs.push(JSON.parse(chunk.toString()) as Record<string, unknown>); cb(); } }));

const keys: Record<'host' | 'a' | 'b' | 'c', KeyPair> = {
  host: generateKeyPair('bastion-host'), a: generateKeyPair('dr-to-agent-a'), b: generateKeyPair('dr-to-agent-b'), c: generateKeyPair('dr-to-agent-c'),
};
const file = (name: string, content: string): string => {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, content, { mode: 0o600 });
  return p;
};
const keyFile = { a: file('key_a', keys.a.privateKey), b: file('key_b', keys.b.privateKey), c: file('key_c', keys.c.privateKey) };

// --- processes ------------------------------------------------------------------------------

interface Run { code: number | null; stdout: string; stderr: string }

/** Runs a command to its end, feeding `input` on stdin (then EOF). */
function sh(cmd: string, args: string[], input = '', env?: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.on('error', () => {}); // ssh may exit before reading
    child.stdin.end(input);
  });
}

const sshOpts = (key: string, port: number, knownHosts: string): string[] => [
  '-F', '/dev/null', '-i', key, '-p', String(port), '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
  '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'ConnectTimeout=10',
];

async function until(what: string, fn: () => boolean, timeoutMs = 10_000): Promise<number> {
  const t0 = Date.now();
  while (!fn()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
  return Date.now() - t0;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** A TCP echo server on 127.0.0.2: the stand-in for an rsync endpoint pod. */
async function echoServer(): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.2', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      srv.close(() => r());
    }),
  };
}

/** A bastion whose keys and targets come from an AgentRegistry. */
interface Agent {
  registry: AgentRegistry;
  port: number;
  knownHosts: string;
  /** `ssh … test-connection` with key k. */
  test(k: string): Promise<Run>;
  /** `ssh -W target` sending one line: whether it came back from the echo server. */
  forward(k: string, target: string): Promise<Run & { ok: boolean }>;
  /** A long-lived `ssh -W target` (a transfer in progress). */
  session(k: string, target: string): Session;
  stop(): Promise<void>;
}

class Session {
  private out = '';
  private readonly child;
  readonly exited: Promise<number | null>;
  constructor(args: string[]) {
    this.child = spawn('ssh', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.setEncoding('utf8').on('data', (d: string) => (this.out += d));
    this.child.stdin.on('error', () => {});
    this.exited = new Promise((resolve) => this.child.once('exit', resolve));
  }
  /** Sends a line through the forward and waits for its echo. */
  async roundTrip(line: string): Promise<void> {
    const from = this.out.length;
    this.child.stdin.write(`${line}\n`);
    await until(`echo of "${line}"`, () => this.out.slice(from).includes(`${line}\n`), 5_000);
  }
  close(): void {
    this.child.kill('SIGTERM');
  }
}

const listen = (server: ssh2.Server): Promise<number> =>
  new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));

// --- the tests ------------------------------------------------------------------------------

describe('agent registry: keys and targets from a ConfigMap watched through a real API server', { timeout: 240_000 }, () => {
  let cluster: TestCluster;
  let client: KubeClient;
  let echo1: Awaited<ReturnType<typeof echoServer>>;
  let echo2: Awaited<ReturnType<typeof echoServer>>;
  const cleanups: (() => Promise<void> | void)[] = [];

  const cmPath = (name?: string): string => `/api/v1/namespaces/${NS}/configmaps${name ? `/${name}` : ''}`;
  const createCm = (name: string, data: Record<string, string>): Promise<unknown> =>
    client.request('POST', cmPath(), { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data });
  /** Merge patch: a null value removes the key. */
  const patchCm = (name: string, data: Record<string, string | null>): Promise<unknown> =>
    client.request('PATCH', cmPath(name), { data }, 'application/merge-patch+json');
  const deleteCm = (name: string): Promise<unknown> => client.request('DELETE', cmPath(name));
  const at = (port: number): string => `127.0.0.2:${port}`;

  async function startAgent(cm: string, opts: Partial<AgentRegistryOptions> = {}, waitReady = true): Promise<Agent> {
    const registry = new AgentRegistry({ client, namespace: NS, name: cm, nodeName: NODE, log: log.child({ cm }), ...opts });
    registry.start();
    if (waitReady) await registry.ready();
    const bastion = createBastion({ hostKey: keys.host.privateKey, authorizedKeys: () => registry.authorizedKeys(), allowList: registry, log: log.child({ server: 'bastion', cm }) });
    const port = await listen(bastion);
    const knownHosts = file(`known_hosts_${cm}`, `[127.0.0.1]:${port} ${keys.host.publicKey}`);
    const agent: Agent = {
      registry, port, knownHosts,
      test: (k) => sh('ssh', [...sshOpts(k, port, knownHosts), 'agent@127.0.0.1', 'test-connection']),
      forward: async (k, target) => {
        const r = await sh('ssh', [...sshOpts(k, port, knownHosts), '-W', target, 'agent@127.0.0.1'], 'hello through the bastion\n');
        return { ...r, ok: r.code === 0 && r.stdout === 'hello through the bastion\n' };
      },
      session: (k, target) => {
        const s = new Session([...sshOpts(k, port, knownHosts), '-W', target, 'agent@127.0.0.1']);
        cleanups.push(() => s.close());
        return s;
      },
      stop: async () => {
        await new Promise((r) => bastion.close(r));
        await registry.stop();
      },
    };
    cleanups.push(() => agent.stop());
    return agent;
  }

  const logsOf = (cm: string, event: string): Record<string, unknown>[] => logs.filter((l) => l.cm === cm && l.event === event);

  before(async () => {
    cluster = await startCluster({ controllerManager: false });
    client = await KubeClient.fromFile(cluster.kubeconfigPath);
    await client.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    [echo1, echo2] = await Promise.all([echoServer(), echoServer()]);
  });

  after(async () => {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
    await Promise.all([echo1?.close(), echo2?.close()]);
    await cluster?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('the format: targetEntry/targetKey write what the registry reads, and refuse what it would not', () => {
    assert.equal(targetKey('op-1'), `${TARGET_KEY_PREFIX}op-1`);
    assert.deepEqual(JSON.parse(targetEntry('n1', '10.0.0.7:2223')), { node: 'n1', address: '10.0.0.7:2223' });
    assert.equal(JSON.parse(targetEntry('n1', '[fd00::7]:2223')).address, '[fd00::7]:2223');
    for (const bad of ['10.0.0.7', 'pod.local:2223', '10.0.0.7:0', '10.0.0.7:65536', '10.0.0.7:02223', 'fd00::7:2223', '[10.0.0.7]:1']) {
      assert.throws(() => targetEntry('n1', bad), /not <ip>:<port>/, bad);
    }
    assert.throws(() => targetEntry('', '10.0.0.7:2223'));
    assert.throws(() => targetKey('a/b'));
    assert.throws(() => targetKey(''));
  });

  it('a key rotation and new targets apply within a second; a rotated-out key is refused for new connections, a connection opened before keeps working', async () => {
    const cm = 'rotation';
    await createCm(cm, { [AUTHORIZED_KEYS_KEY]: keys.a.publicKey, [targetKey('op1')]: targetEntry(NODE, at(echo1.port)) });
    const agent = await startAgent(cm);

    let r = await agent.test(keyFile.a);
    assert.equal(r.stdout, 'ok\n', r.stderr);
    r = await agent.test(keyFile.b);
    assert.match(r.stderr, /Permission denied \(publickey\)/, 'key b is not registered yet');
    const f = await agent.forward(keyFile.a, at(echo1.port));
    assert.ok(f.ok, f.stderr);

    // A transfer in progress, authenticated with key a.
    const running = agent.session(keyFile.a, at(echo1.port));
    await running.roundTrip('before the rotation');

    // Rotation: key b replaces key a.
    await patchCm(cm, { [AUTHORIZED_KEYS_KEY]: keys.b.publicKey });
    const rotatedIn = await until('key b in the registry', () => agent.registry.snapshot().keys.join() === keys.b.fingerprint, 1_000);
    r = await agent.test(keyFile.b);
    assert.equal(r.stdout, 'ok\n', `the new key works ${rotatedIn} ms after the change: ${r.stderr}`);
    r = await agent.test(keyFile.a);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Permission denied \(publickey\)/, 'the rotated-out key is refused for a new connection');
    assert.ok((await agent.forward(keyFile.b, at(echo1.port))).ok, 'forwarding with the new key');
    await running.roundTrip('after the rotation'); // the running transfer did not break

    // Two keys at once (an overlap during a rotation), then a new target.
    await patchCm(cm, { [AUTHORIZED_KEYS_KEY]: `# rotation overlap\n${keys.b.publicKey}\n${keys.c.publicKey}` });
    await until('keys b and c', () => agent.registry.snapshot().keys.length === 2, 1_000);
    assert.equal((await agent.test(keyFile.c)).stdout, 'ok\n');
    assert.equal((await agent.test(keyFile.b)).stdout, 'ok\n');

    let f2 = await agent.forward(keyFile.b, at(echo2.port));
    assert.equal(f2.ok, false, 'echo2 is not registered yet');
    assert.match(f2.stderr, /open failed|administratively prohibited/);
    await patchCm(cm, { [targetKey('op2')]: targetEntry(NODE, at(echo2.port)) });
    await until('target op2', () => agent.registry.allows('127.0.0.2', echo2.port), 1_000);
    f2 = await agent.forward(keyFile.b, at(echo2.port));
    assert.ok(f2.ok, f2.stderr);

    // Unregistering op1: new forwards to it are refused.
    await patchCm(cm, { [targetKey('op1')]: null });
    await until('op1 gone', () => !agent.registry.allows('127.0.0.2', echo1.port), 1_000);
    const f1 = await agent.forward(keyFile.b, at(echo1.port));
    assert.equal(f1.ok, false);
    assert.match(f1.stderr, /open failed|administratively prohibited/);
    await running.roundTrip('still running at the end');

    const keyLogs = logsOf(cm, 'registry-keys');
    assert.ok(keyLogs.some((l) => l.keys === 1 && JSON.stringify(l.added) === JSON.stringify([keys.b.fingerprint]) && JSON.stringify(l.removed) === JSON.stringify([keys.a.fingerprint])), JSON.stringify(keyLogs));
    const targetLogs = logsOf(cm, 'registry-targets');
    assert.ok(targetLogs.some((l) => JSON.stringify(l.added) === JSON.stringify([{ op: 'op2', address: at(echo2.port) }])), JSON.stringify(targetLogs));
    assert.ok(targetLogs.some((l) => JSON.stringify(l.removed) === JSON.stringify([{ op: 'op1', address: at(echo1.port) }])), JSON.stringify(targetLogs));
    assert.ok(logs.some((l) => l.cm === cm && l.event === 'forward' && l.target === at(echo2.port)), 'accepted forwards are logged');
    assert.ok(logs.some((l) => l.cm === cm && l.event === 'refused' && l.target === at(echo1.port)), 'refused forwards are logged');
    running.close();
  });

  it("a target registered for another node is refused; the same address for this node is allowed", async () => {
    const cm = 'other-node';
    await createCm(cm, { [AUTHORIZED_KEYS_KEY]: keys.a.publicKey, [targetKey('op-b')]: targetEntry('node-b', at(echo1.port)) });
    const agent = await startAgent(cm);
    assert.equal(agent.registry.allows('127.0.0.2', echo1.port), false);
    const r = await agent.forward(keyFile.a, at(echo1.port));
    assert.equal(r.ok, false);
    assert.match(r.stderr, /open failed|administratively prohibited/);
    assert.ok(logs.some((l) => l.cm === cm && l.event === 'refused' && l.target === at(echo1.port)));

    await patchCm(cm, { [targetKey('op-a')]: targetEntry(NODE, at(echo1.port)) });
    await until('op-a', () => agent.registry.allows('127.0.0.2', echo1.port), 1_000);
    assert.ok((await agent.forward(keyFile.a, at(echo1.port))).ok);
    assert.deepEqual(agent.registry.snapshot().targets, { 'op-a': at(echo1.port) });
  });

  it('malformed entries are ignored and logged once; the valid ones still work', async () => {
    const cm = 'malformed';
    const bad = {
      [targetKey('plain')]: at(echo1.port), // the old allow-file format
      [targetKey('no-port')]: JSON.stringify({ node: NODE, address: '127.0.0.2' }),
      [targetKey('hostname')]: JSON.stringify({ node: NODE, address: `localhost:${echo1.port}` }),
      [targetKey('node-list')]: JSON.stringify({ node: [NODE], address: at(echo1.port) }),
      [TARGET_KEY_PREFIX]: JSON.stringify({ node: NODE, address: at(echo1.port) }), // no opId
    };
    await createCm(cm, {
      [AUTHORIZED_KEYS_KEY]: `not a key at all\n${keys.a.publicKey}command="id" ${keys.b.publicKey}`,
      ...bad,
      [targetKey('good')]: targetEntry(NODE, at(echo2.port)),
    });
    const agent = await startAgent(cm);
    assert.deepEqual(agent.registry.snapshot().keys, [keys.a.fingerprint]);
    assert.deepEqual(agent.registry.snapshot().targets, { good: at(echo2.port) });
    assert.equal((await agent.test(keyFile.a)).stdout, 'ok\n');
    assert.match((await agent.test(keyFile.b)).stderr, /Permission denied/, 'a key line with options is not accepted');
    assert.ok((await agent.forward(keyFile.a, at(echo2.port))).ok);
    assert.equal((await agent.forward(keyFile.a, at(echo1.port))).ok, false);
    assert.equal(agent.registry.allows('localhost', echo1.port), false);

    const warned = (): Record<string, unknown>[] => logsOf(cm, 'registry-malformed');
    assert.deepEqual(warned().map((l) => l.key).sort(), [...Object.keys(bad), AUTHORIZED_KEYS_KEY, AUTHORIZED_KEYS_KEY].sort());
    // Another change to the ConfigMap does not log them again.
    await patchCm(cm, { [targetKey('more')]: targetEntry(NODE, '127.0.0.9:9') });
    await until('op more', () => 'more' in agent.registry.snapshot().targets, 1_000);
    assert.equal(warned().length, Object.keys(bad).length + 2);
    // A new malformed value is logged.
    await patchCm(cm, { [targetKey('more')]: '{"node":"node-a"' });
    await until('op more gone', () => !('more' in agent.registry.snapshot().targets), 1_000);
    assert.equal(warned().length, Object.keys(bad).length + 3);
    assert.match(String(warned().at(-1)?.reason), /not JSON/);
  });

  it('deleting the ConfigMap refuses every key and target; recreating it restores them', async () => {
    const cm = 'deleted';
    const data = { [AUTHORIZED_KEYS_KEY]: keys.a.publicKey, [targetKey('op1')]: targetEntry(NODE, at(echo1.port)) };
    await createCm(cm, data);
    const agent = await startAgent(cm);
    assert.ok((await agent.forward(keyFile.a, at(echo1.port))).ok);

    await deleteCm(cm);
    await until('ConfigMap gone', () => !agent.registry.snapshot().exists, 1_000);
    assert.deepEqual(agent.registry.authorizedKeys(), []);
    assert.equal(agent.registry.allows('127.0.0.2', echo1.port), false);
    const r = await agent.test(keyFile.a);
    assert.match(r.stderr, /Permission denied \(publickey\)/);
    assert.ok(logsOf(cm, 'registry-configmap').length > 0);

    await createCm(cm, data);
    await until('ConfigMap back', () => agent.registry.allows('127.0.0.2', echo1.port), 1_000);
    assert.ok((await agent.forward(keyFile.a, at(echo1.port))).ok);
  });

  it('a ConfigMap that does not exist at start: ready, nothing allowed; its creation is picked up', async () => {
    const cm = 'absent';
    const agent = await startAgent(cm);
    assert.deepEqual(agent.registry.snapshot(), { synced: true, connected: true, exists: false, keys: [], targets: {} });
    assert.match((await agent.test(keyFile.a)).stderr, /Permission denied/);
    await createCm(cm, { [AUTHORIZED_KEYS_KEY]: keys.a.publicKey });
    await until('created', () => agent.registry.authorizedKeys().length === 1, 1_000);
    assert.equal((await agent.test(keyFile.a)).stdout, 'ok\n');
  });

  it('a broken watch refuses everything until the API server answers again; changes made meanwhile are seen', async () => {
    const cm = 'broken-watch';
    await createCm(cm, { [AUTHORIZED_KEYS_KEY]: keys.a.publicKey, [targetKey('op1')]: targetEntry(NODE, at(echo1.port)) });
    const proxy = await startProxy(Number(new URL(cluster.server).port));
    cleanups.push(() => proxy.close());
    const viaProxy = await KubeClient.fromFile(kubeconfigVia(cluster.kubeconfigPath, proxy), undefined, { timeoutMs: 2_000 });
    const agent = await startAgent(cm, { client: viaProxy, backoff: { initialMs: 50, maxMs: 300 }, stallTimeoutMs: 3_000 });
    assert.equal((await agent.test(keyFile.a)).stdout, 'ok\n');

    proxy.blackhole(); // the watch connection dies; new ones hang
    const down = await until('fail closed', () => agent.registry.authorizedKeys().length === 0, 2_000);
    assert.equal(agent.registry.allows('127.0.0.2', echo1.port), false);
    assert.match((await agent.test(keyFile.a)).stderr, /Permission denied/, `refused ${down} ms after the watch broke`);
    assert.equal(agent.registry.snapshot().connected, false);
    assert.ok(logsOf(cm, 'registry-unreachable').length === 1, 'logged once');
    await patchCm(cm, { [AUTHORIZED_KEYS_KEY]: keys.b.publicKey }); // through the direct client

    proxy.restore();
    // The watch resumes from where it was and replays the change made while disconnected.
    await until('back, with the change', () => agent.registry.authorizedKeys().length === 1 && agent.registry.snapshot().keys[0] === keys.b.fingerprint, 15_000);
    assert.equal((await agent.test(keyFile.b)).stdout, 'ok\n');
    assert.match((await agent.test(keyFile.a)).stderr, /Permission denied/);
    assert.ok(logsOf(cm, 'registry-connected').length === 1);
  });

  it('an API server unreachable at start: not ready, no keys, nothing allowed; ready once it answers', async () => {
    const cm = 'unreachable';
    await createCm(cm, { [AUTHORIZED_KEYS_KEY]: keys.a.publicKey, [targetKey('op1')]: targetEntry(NODE, at(echo1.port)) });
    const proxy = await startProxy(Number(new URL(cluster.server).port));
    cleanups.push(() => proxy.close());
    proxy.blackhole();
    const viaProxy = await KubeClient.fromFile(kubeconfigVia(cluster.kubeconfigPath, proxy), undefined, { timeoutMs: 1_000 });
    const agent = await startAgent(cm, { client: viaProxy, backoff: { initialMs: 50, maxMs: 300 } }, false);
    let ready = false;
    const readyP = agent.registry.ready().then(() => (ready = true));
    await sleep(3_000); // a few list attempts time out
    assert.equal(ready, false, 'not ready while the API server does not answer');
    assert.deepEqual(agent.registry.snapshot(), { synced: false, connected: false, exists: false, keys: [], targets: {} });
    assert.equal(agent.registry.allows('127.0.0.2', echo1.port), false);
    assert.match((await agent.test(keyFile.a)).stderr, /Permission denied/);

    proxy.restore();
    await readyP;
    assert.equal((await agent.test(keyFile.a)).stdout, 'ok\n');
    assert.ok((await agent.forward(keyFile.a, at(echo1.port))).ok);
  });

  it('dr-syncer-agent bastion --registry: does not listen before it has read the registry, then serves; stops on SIGTERM', async () => {
    const help = await sh(process.execPath, ['--import', 'tsx', path.resolve('src/agent/main.ts'), 'bastion', '--help']);
    assert.equal(help.code, 0);
    for (const flag of ['--registry', '--node-name', '--listen', 'HOST_IP', 'NODE_NAME']) assert.ok(help.stdout.includes(flag), flag);
    const noNode = await sh(process.execPath, ['--import', 'tsx', path.resolve('src/agent/main.ts'), 'bastion', '--host-key', file('hk', keys.host.privateKey), '--registry', `${NS}/x`], '', { ...process.env, NODE_NAME: '' });
    assert.equal(noNode.code, 2);
    assert.match(noNode.stderr, /--node-name/);

    const cm = 'process';
    await createCm(cm, { [AUTHORIZED_KEYS_KEY]: keys.a.publicKey, [targetKey('op1')]: targetEntry(NODE, at(echo1.port)), [targetKey('op2')]: targetEntry('node-b', at(echo2.port)) });
    const proxy = await startProxy(Number(new URL(cluster.server).port));
    cleanups.push(() => proxy.close());
    proxy.blackhole();
    const port = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', path.resolve('src/agent/main.ts'), 'bastion', '--listen', `127.0.0.1:${port}`, '--host-key', file('hk', keys.host.privateKey), '--registry', `${NS}/${cm}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, KUBECONFIG: kubeconfigVia(cluster.kubeconfigPath, proxy), NODE_NAME: NODE },
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    cleanups.push(() => void child.kill('SIGKILL'));
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const agent = {
      port,
      knownHosts: file('kh_process', `[127.0.0.1]:${port} ${keys.host.publicKey}`),
    };
    try {
      await until('reading the registry', () => stderr.includes('reading the registry'), 30_000);
      await sleep(2_000);
      assert.doesNotMatch(stderr, /listening/, 'no listener before the registry is read');
      const connect = await sh('ssh', [...sshOpts(keyFile.a, port, agent.knownHosts), 'agent@127.0.0.1', 'test-connection']);
      assert.match(connect.stderr, /Connection refused/);

      proxy.restore();
      await until('listening', () => stderr.includes('listening'), 30_000);
      const r = await sh('ssh', [...sshOpts(keyFile.a, port, agent.knownHosts), 'agent@127.0.0.1', 'test-connection']);
      assert.equal(r.stdout, 'ok\n', r.stderr);
      const ok = await sh('ssh', [...sshOpts(keyFile.a, port, agent.knownHosts), '-W', at(echo1.port), 'agent@127.0.0.1'], 'through the agent process\n');
      assert.equal(ok.stdout, 'through the agent process\n', ok.stderr);
      const other = await sh('ssh', [...sshOpts(keyFile.a, port, agent.knownHosts), '-W', at(echo2.port), 'agent@127.0.0.1'], 'x\n');
      assert.notEqual(other.code, 0, 'node-b target refused (NODE_NAME is node-a)');
      const lines = stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.ok(lines.some((l) => l.msg === 'registry synced' && l.keys === 1 && l.targets === 1), stderr);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, stderr);
  });
});
