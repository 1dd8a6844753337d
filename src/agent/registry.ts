// The agent's registry, read from the Kubernetes API: one ConfigMap (default "dr-syncer-agent")
// holds the keys allowed into the bastion and the forwarding targets the controller registered
// for running operations. A list+watch sees a change within a second of the write, where a
// mounted ConfigMap reaches the pod only at the kubelet's next sync (a minute or more).
//
// The ConfigMap's format (this module is its one definition; the controller writes it):
//   data.authorized_keys    OpenSSH authorized_keys lines (no options before the key type)
//   data["target.<opId>"]   {"node":"<nodeName>","address":"<ip>:<port>"}  (IPv6: "[ip]:port")
// An agent allows a forward to host:port iff some target entry names its node and that exact
// address. Anything malformed is ignored (and logged once).
//
// Fail closed: no ConfigMap, a deleted one, or a list/watch that failed (until the next
// successful list or watch) means no keys and no targets. Connections already open are left
// alone: a running transfer does not break when a key is rotated out.
//
// RBAC: get/list/watch on configmaps in the namespace; resourceNames: [<name>] suffices because
// the list and the watch carry the metadata.name field selector.
import net from 'node:net';
import type { ParsedKey } from 'ssh2';
import { isRecord, type KubeObject } from '../core/types.ts';
import { Informer, type InformerClient, type InformerOptions } from '../runtime/informer.ts';
import { silentLogger, type Logger } from '../util/log.ts';
import type { AllowList } from './bastion.ts';
import { fingerprintOf, parseAuthorizedKeys } from './keys.ts';

/** Default name of the registry ConfigMap (in the agent's namespace). */
export const AGENT_CONFIGMAP = 'dr-syncer-agent';
/** Data key of the authorized_keys text. */
export const AUTHORIZED_KEYS_KEY = 'authorized_keys';
/** Data keys of forwarding targets: TARGET_KEY_PREFIX + opId. */
export const TARGET_KEY_PREFIX = 'target.';

/** The JSON value of a target entry. */
export interface TargetEntry {
  /** The node whose agent may forward (spec.nodeName of the endpoint pod). */
  node: string;
  /** "<ipv4>:<port>" or "[<ipv6>]:<port>", compared as a string with the requested destination. */
  address: string;
}

const CONFIGMAP_KEY = /^[-._a-zA-Z0-9]+$/;

/** "host:port", IPv6 in brackets: how an address is written in a target entry. */
export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Whether `address` is an IP address and a port in the entry format (canonical port, no zeros in front). */
export function isTargetAddress(address: string): boolean {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:[\]]+):(\d+)$/.exec(address);
  if (!m) return false;
  const [, host = '', portText = ''] = m;
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535 || String(port) !== portText) return false;
  return address.startsWith('[') ? net.isIPv6(host) : net.isIPv4(host);
}

/** The data key of operation `opId`'s target. */
export function targetKey(opId: string): string {
  const key = `${TARGET_KEY_PREFIX}${opId}`;
  if (opId === '' || !CONFIGMAP_KEY.test(key) || key.length > 253) throw new Error(`invalid operation id for a ConfigMap key: "${opId}"`);
  return key;
}

/** The data value of a target entry: what the controller writes under targetKey(opId). */
export function targetEntry(node: string, address: string): string {
  if (node === '') throw new Error('target entry: node is empty');
  if (!isTargetAddress(address)) throw new Error(`target entry: "${address}" is not <ip>:<port>`);
  const entry: TargetEntry = { node, address };
  return JSON.stringify(entry);
}

/** Parses a target entry's value; throws with the reason when it is malformed. Unknown fields are ignored. */
export function parseTargetEntry(value: string): TargetEntry {
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch {
    throw new Error('not JSON');
  }
  if (!isRecord(v)) throw new Error('not a JSON object');
  if (typeof v.node !== 'string' || v.node === '') throw new Error('"node" is not a non-empty string');
  if (typeof v.address !== 'string' || !isTargetAddress(v.address)) throw new Error('"address" is not "<ip>:<port>"');
  return { node: v.node, address: v.address };
}

export interface AgentRegistryOptions {
  client: InformerClient;
  namespace: string;
  /** Default AGENT_CONFIGMAP. */
  name?: string;
  /** This agent's node: only targets naming it are allowed. */
  nodeName: string;
  log?: Logger;
  /** A watch silent this long is restarted (and counts as broken meanwhile). Default 90 s: the
   * API server sends a bookmark about every minute, so a silently dropped connection shows. */
  stallTimeoutMs?: number;
  /** Retry delays after failed lists/watches (the informer's defaults otherwise). */
  backoff?: InformerOptions['backoff'];
}

/** What the registry holds right now (for logs, status and tests). */
export interface RegistrySnapshot {
  /** The first list succeeded. */
  synced: boolean;
  /** The last list or watch succeeded and nothing failed since. */
  connected: boolean;
  /** Whether the ConfigMap exists. */
  exists: boolean;
  /** Fingerprints of the authorized keys (as held, whether or not usable now). */
  keys: string[];
  /** opId → address, this node's targets only. */
  targets: Record<string, string>;
}

export class AgentRegistry implements AllowList {
  readonly namespace: string;
  readonly name: string;
  readonly nodeName: string;

  private readonly informer: Informer;
  private readonly log: Logger;
  private exists = false;
  private keys: ParsedKey[] = [];
  private fingerprints: string[] = [];
  private targets = new Map<string, string>();
  private addresses = new Set<string>();
  /** Malformed entries present now, each logged when it appeared. */
  private malformed = new Set<string>();
  /** The informer's failure count (errors + stalls) at the last successful list or watch. */
  private failuresAtSuccess = -1;
  private reportedDown = false;
  private stopping = false;
  private loggedSync = false;

  constructor(opts: AgentRegistryOptions) {
    this.namespace = opts.namespace;
    this.name = opts.name ?? AGENT_CONFIGMAP;
    this.nodeName = opts.nodeName;
    this.log = (opts.log ?? silentLogger).child({ registry: `${this.namespace}/${this.name}` });
    this.informer = new Informer({
      client: this.tracked(opts.client),
      path: `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/configmaps`,
      fieldSelector: `metadata.name=${this.name}`,
      stallTimeoutMs: opts.stallTimeoutMs ?? 90_000,
      backoff: opts.backoff,
      log: this.log,
      name: `configmap ${this.namespace}/${this.name}`,
    });
    this.informer.addHandler({
      add: (cm) => this.apply(cm),
      update: (_old, cm) => this.apply(cm),
      delete: () => this.apply(undefined),
    });
  }

  /** Starts the list+watch (until stop()). */
  start(): void {
    this.informer.start();
  }

  /** Resolves after the first successful list; rejects if stopped before. */
  async ready(signal?: AbortSignal): Promise<void> {
    await this.informer.waitForSync(signal);
    if (this.loggedSync) return;
    this.loggedSync = true;
    const s = this.snapshot();
    this.log.info({ exists: s.exists, keys: s.keys.length, targets: Object.keys(s.targets).length }, 'registry synced');
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.informer.stop();
  }

  /** The keys allowed into the bastion now (none unless synced and connected). */
  authorizedKeys(): ParsedKey[] {
    return this.usable() ? this.keys : [];
  }

  /** True iff this node has a registered target at exactly host:port (and the registry is usable). */
  allows(host: string, port: number): boolean {
    return this.usable() && this.addresses.has(formatAddress(host, port));
  }

  snapshot(): RegistrySnapshot {
    return {
      synced: this.informer.hasSynced(),
      connected: this.connected(),
      exists: this.exists,
      keys: [...this.fingerprints],
      targets: Object.fromEntries(this.targets),
    };
  }

  // ---------------------------------------------------------------------------------------------

  private failures(): number {
    return this.informer.stats.errors + this.informer.stats.stalls;
  }

  /** Every failed list, failed watch and stalled watch counts in the informer's stats: until a
   * list or watch succeeds again, what we hold may be stale. */
  private connected(): boolean {
    return this.failuresAtSuccess === this.failures();
  }

  private usable(): boolean {
    return this.informer.hasSynced() && this.connected();
  }

  private succeeded(): void {
    this.failuresAtSuccess = this.failures();
    if (this.reportedDown) {
      this.reportedDown = false;
      this.log.info({ event: 'registry-connected' }, 'registry reachable again');
    }
  }

  private failed(err: unknown): void {
    if (this.reportedDown || this.stopping) return;
    this.reportedDown = true;
    this.log.warn({ event: 'registry-unreachable', err: err instanceof Error ? err.message : String(err) }, 'registry list/watch failed: refusing all keys and forwards until it recovers');
  }

  /** The informer's client, with success and failure noted (the informer counts failures itself). */
  private tracked(client: InformerClient): InformerClient {
    return {
      list: async (...args) => {
        try {
          const res = await client.list(...args);
          this.succeeded();
          return res;
        } catch (err) {
          this.failed(err);
          throw err;
        }
      },
      raw: async (...args) => {
        let res;
        try {
          res = await client.raw(...args);
        } catch (err) {
          this.failed(err);
          throw err;
        }
        const status = res.statusCode ?? 0;
        if (status === 200) {
          this.succeeded();
          res.once('error', (err) => this.failed(err));
        } else if (status !== 410) this.failed(new Error(`watch answered HTTP ${status}`)); // 410: the informer re-lists
        return res;
      },
    };
  }

  private apply(cm: KubeObject | undefined): void {
    const data = cm && isRecord(cm.data) ? cm.data : {};
    const malformed = new Map<string, Record<string, unknown>>();

    const keys: ParsedKey[] = [];
    const text = data[AUTHORIZED_KEYS_KEY];
    if (text !== undefined && typeof text !== 'string') malformed.set(AUTHORIZED_KEYS_KEY, { key: AUTHORIZED_KEYS_KEY, reason: 'not a string' });
    if (typeof text === 'string') {
      text.split('\n').forEach((raw, i) => {
        const line = raw.trim();
        if (line === '' || line.startsWith('#')) return;
        const [key] = parseAuthorizedKeys(line);
        if (key) keys.push(key);
        else malformed.set(`${AUTHORIZED_KEYS_KEY}\0${line}`, { key: AUTHORIZED_KEYS_KEY, line: i + 1, value: line.slice(0, 120), reason: 'not an OpenSSH public key line' });
      });
    }

    const targets = new Map<string, string>();
    let otherNodes = 0;
    for (const [key, value] of Object.entries(data)) {
      if (!key.startsWith(TARGET_KEY_PREFIX)) continue;
      const opId = key.slice(TARGET_KEY_PREFIX.length);
      try {
        if (typeof value !== 'string') throw new Error('not a string');
        if (opId === '') throw new Error('no operation id after the prefix');
        const entry = parseTargetEntry(value);
        if (entry.node === this.nodeName) targets.set(opId, entry.address);
        else otherNodes++;
      } catch (err) {
        malformed.set(`${key}\0${String(value)}`, { key, value: String(value).slice(0, 200), reason: err instanceof Error ? err.message : String(err) });
      }
    }

    for (const [id, fields] of malformed) if (!this.malformed.has(id)) this.log.warn({ event: 'registry-malformed', ...fields }, 'malformed registry entry ignored');
    this.malformed = new Set(malformed.keys());

    if (this.exists !== (cm !== undefined)) {
      if (cm) this.log.info({ event: 'registry-configmap' }, 'registry ConfigMap present');
      else this.log.warn({ event: 'registry-configmap' }, 'registry ConfigMap absent: no keys, no targets');
    }
    this.exists = cm !== undefined;

    const fingerprints = keys.map((k) => fingerprintOf(k.getPublicSSH()));
    const addedKeys = fingerprints.filter((f) => !this.fingerprints.includes(f));
    const removedKeys = this.fingerprints.filter((f) => !fingerprints.includes(f));
    if (addedKeys.length > 0 || removedKeys.length > 0) {
      this.log.info({ event: 'registry-keys', keys: fingerprints.length, added: addedKeys, removed: removedKeys }, 'authorized keys changed');
    }

    const added = [...targets].filter(([op, addr]) => this.targets.get(op) !== addr).map(([op, address]) => ({ op, address }));
    const removed = [...this.targets].filter(([op, addr]) => targets.get(op) !== addr).map(([op, address]) => ({ op, address }));
    if (added.length > 0 || removed.length > 0) {
      this.log.info({ event: 'registry-targets', targets: targets.size, otherNodes, added, removed }, 'forwarding targets changed');
    }

    this.keys = keys;
    this.fingerprints = fingerprints;
    this.targets = targets;
    this.addresses = new Set(targets.values());
  }
}
