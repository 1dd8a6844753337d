// A thin REST client over a kubeconfig. @kubernetes/client-node parses the kubeconfig and
// applies its credentials (certificates, tokens, exec plugins); requests go through node's https
// so that LIST pages, discovery and watch streams are plain JSON we control.
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { KubeConfig } from '@kubernetes/client-node';
import type { KubeObject, ResourceType } from '../../core/types.ts';

export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export interface Discovery {
  types: ResourceType[];
  /** API groups whose discovery failed, with the error. */
  unavailable: { group: string; message: string }[];
  /** The server's gitVersion (e.g. v1.34.1): an upgrade can change what objects read as. */
  serverVersion: string;
}

export interface ListResult {
  items: KubeObject[];
  resourceVersion: string;
}

/** One page of a LIST. */
export interface ListPage extends ListResult {
  /** Where the next page starts; undefined on the last page. */
  continue?: string;
  /** How many objects the pages after this one hold, as the server counts them (not with selectors). */
  remainingItemCount?: number;
}

/** Request mechanics (client-go's rest.Config equivalents). */
export interface KubeClientOptions {
  /** Per-request timeout in ms, response body included; watches (raw) have none. Default 30 s. */
  timeoutMs?: number;
  /** Client-side rate limit: a token bucket of `burst` tokens refilled at `qps` per second
   * (client-go's defaults: 5 and 10). qps <= 0 turns it off. */
  qps?: number;
  burst?: number;
  /** Retries of an answer the server asks us to repeat later (429, or 5xx with Retry-After), like client-go (10). */
  maxRetries?: number;
}

const DEFAULTS: Required<KubeClientOptions> = { timeoutMs: 30_000, qps: 5, burst: 10, maxRetries: 10 };

/**
 * A one-shot command (`dr-syncer sync`) reads one cluster once: no client-side limit. The API
 * server's priority and fairness answers 429 when it must, and request() honours it. (A limit of
 * 50/s made a sync of 100 namespaces 6x slower: 300 LISTs, see docs/benchmarks.md.)
 */
export const ONE_SHOT_KUBE_API: KubeClientOptions = { qps: 0 };

/** A token bucket that hands out reservations: callers wait their turn instead of polling. */
class TokenBucket {
  private tokens: number;
  private at = performance.now();
  constructor(
    private readonly qps: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  /** How long the caller must wait for its token (the token is taken now). */
  take(): number {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.qps);
    this.at = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.qps) * 1000;
  }

  /** A reservation that was not used (its wait was cancelled). */
  giveBack(): void {
    this.tokens = Math.min(this.burst, this.tokens + 1);
  }
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (ms <= 0) return resolve();
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** The wait a Retry-After header asks for (delta-seconds or an HTTP date), in ms, within [1 s, 60 s]. */
function retryAfterMs(header: string | string[] | undefined): number | undefined {
  const v = Array.isArray(header) ? header[0] : header;
  if (!v) return undefined;
  const secs = /^\d+$/.test(v.trim()) ? Number(v) : (Date.parse(v) - Date.now()) / 1000;
  return Number.isFinite(secs) ? Math.min(Math.max(secs, 1), 60) * 1000 : undefined;
}

interface ApiResourceList {
  groupVersion: string;
  resources: { name: string; singularName?: string; namespaced: boolean; kind: string; verbs: string[]; shortNames?: string[] }[];
}

export class KubeClient {
  readonly server: string;
  /** Where the client's configuration came from ("kubeconfig /path, context ctx"), for messages. */
  origin = 'in-memory kubeconfig';
  private readonly agent: https.Agent | http.Agent;
  private readonly opts: Required<KubeClientOptions>;
  private readonly bucket?: TokenBucket;
  /** Requests sent (each retry counts), and how many of them were LIST pages: for benchmarks and tests. */
  readonly sent = { requests: 0, lists: 0 };

  private constructor(
    readonly kc: KubeConfig,
    private readonly baseOpts: https.RequestOptions,
    options: KubeClientOptions = {},
  ) {
    this.opts = { ...DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
    if (this.opts.qps > 0) this.bucket = new TokenBucket(this.opts.qps, Math.max(1, this.opts.burst));
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster: set current-context');
    this.server = cluster.server.replace(/\/$/, '');
    const { ca, cert, key, pfx, passphrase, rejectUnauthorized, servername } = baseOpts;
    // No socket limit: every watch holds a connection for minutes, and a capped pool would make
    // ordinary requests wait behind them (HTTP/1.1 has one request per connection).
    this.agent = this.server.startsWith('https:')
      // One TLS context for every connection: without it each new socket parses the CA, the
      // certificate and the key again (tls.connect makes a context per call).
      ? new https.Agent({ keepAlive: true, secureContext: tls.createSecureContext({ ca, cert, key, pfx, passphrase }), rejectUnauthorized, servername })
      : new http.Agent({ keepAlive: true });
  }

  static async fromKubeConfig(kc: KubeConfig, options?: KubeClientOptions): Promise<KubeClient> {
    const opts: https.RequestOptions = {};
    await kc.applyToHTTPSOptions(opts);
    return new KubeClient(kc, opts, options);
  }

  static async fromFile(file: string, context?: string, options?: KubeClientOptions): Promise<KubeClient> {
    const kc = new KubeConfig();
    kc.loadFromFile(file);
    if (context) kc.setCurrentContext(context);
    const client = await KubeClient.fromKubeConfig(kc, options);
    client.origin = `kubeconfig ${file}, context ${kc.getCurrentContext()}`;
    return client;
  }

  /** `origin` says where the content came from, e.g. "kubeconfig Secret dr-syncer/prod-kubeconfig". */
  static async fromString(content: string, context?: string, options?: KubeClientOptions, origin = 'kubeconfig'): Promise<KubeClient> {
    const kc = new KubeConfig();
    kc.loadFromString(content);
    if (context) kc.setCurrentContext(context);
    const client = await KubeClient.fromKubeConfig(kc, options);
    client.origin = `${origin}, context ${kc.getCurrentContext()}`;
    return client;
  }

  /** "kubeconfig /path, context ctx, server https://…": which cluster, for error messages. */
  describe(): string {
    return `${this.origin}, server ${this.server}`;
  }

  get contextName(): string {
    return this.kc.getCurrentContext();
  }

  /** Credentials that expire (exec plugins, OIDC) are refreshed per request by client-node. */
  private async headers(): Promise<Record<string, string>> {
    const opts: https.RequestOptions = { headers: {} };
    await this.kc.applyToHTTPSOptions(opts);
    return (opts.headers ?? {}) as Record<string, string>;
  }

  /**
   * A JSON request; `signal` really cancels it, also while the response body is read. Each try
   * has the client's timeout (a server that stops answering must not hold a worker forever); an
   * answer asking us to come back later (429, or a 5xx with Retry-After) is retried after the
   * time it names, like client-go.
   */
  async request<T = unknown>(method: string, path: string, body?: unknown, contentType = 'application/json', signal?: AbortSignal): Promise<T> {
    // Retries end at a deadline too: a throttling server must not hold a worker for minutes.
    const retryDeadline = Date.now() + 2 * this.opts.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      // Our own queue first: time spent waiting for a token is not the server's to answer for.
      await this.takeToken(signal);
      this.sent.requests++;
      const timeout = AbortSignal.timeout(this.opts.timeoutMs);
      const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
      let res: http.IncomingMessage;
      let text: string;
      try {
        res = await this.send(method, path, body, contentType, both);
        text = await readAll(res, both);
      } catch (err) {
        if (timeout.aborted && !signal?.aborted) {
          throw new KubeApiError(0, 'Timeout', `${method} ${path}: ${this.server} did not answer within ${this.opts.timeoutMs / 1000}s`);
        }
        throw err;
      }
      const status = res.statusCode ?? 0;
      const wait = retryAfterMs(res.headers['retry-after']);
      // 429: the server did not process the request, any method may be repeated; a 5xx only
      // when the server says when, and only for reads.
      const retryable = status === 429 || (status >= 500 && wait !== undefined && method === 'GET');
      const pause = wait ?? Math.min(1000 * 2 ** attempt, 30_000);
      if (retryable && attempt < this.opts.maxRetries && Date.now() + pause < retryDeadline) {
        await sleep(pause, signal);
        continue;
      }
      if (status >= 400) throw toApiError(status, text, method, path);
      return (text ? JSON.parse(text) : undefined) as T;
    }
  }

  /** Starts a request and returns the response stream (used for watches: no timeout here). */
  async raw(method: string, path: string, body?: unknown, contentType = 'application/json', signal?: AbortSignal): Promise<http.IncomingMessage> {
    await this.takeToken(signal);
    return this.send(method, path, body, contentType, signal);
  }

  /** Waits for the rate limiter; a wait that is aborted gives its token back. */
  private async takeToken(signal?: AbortSignal): Promise<void> {
    const delay = this.bucket?.take() ?? 0;
    if (delay <= 0) return;
    try {
      await sleep(delay, signal);
    } catch (err) {
      this.bucket?.giveBack();
      throw err;
    }
  }

  private async send(method: string, path: string, body: unknown, contentType: string, signal?: AbortSignal): Promise<http.IncomingMessage> {
    const url = new URL(this.server + path);
    const headers = { ...(await this.headers()), Accept: 'application/json' } as Record<string, string>;
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    if (payload !== undefined) {
      headers['Content-Type'] = contentType;
      // Always framed: Node sends a DELETE body neither chunked nor with a length by default, so
      // the server would read it as the start of the next request on the kept-alive connection.
      headers['Content-Length'] = String(Buffer.byteLength(payload));
    }
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { ...this.baseOpts, method, headers, agent: this.agent, signal }, resolve);
      req.on('error', reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  get<T = unknown>(path: string, signal?: AbortSignal): Promise<T> {
    return this.request<T>('GET', path, undefined, undefined, signal);
  }

  /** LIST with pagination, so 10,000 objects never arrive as one huge response. */
  async list(path: string, query: Record<string, string> = {}, pageSize = 500, signal?: AbortSignal): Promise<ListResult> {
    const items: KubeObject[] = [];
    let resourceVersion = '';
    for await (const page of this.listPages(path, query, pageSize, signal)) {
      for (const it of page.items) items.push(it);
      resourceVersion = page.resourceVersion;
    }
    return { items, resourceVersion };
  }

  /** The pages of a LIST as they arrive: a caller can work on one page while the next is read. */
  async *listPages(path: string, query: Record<string, string> = {}, pageSize = 500, signal?: AbortSignal): AsyncGenerator<ListResult> {
    let cont: string | undefined;
    do {
      const page = await this.listPage(path, query, pageSize, cont, signal);
      cont = page.continue;
      yield { items: page.items, resourceVersion: page.resourceVersion };
    } while (cont);
  }

  /** One page of a LIST: at most `limit` objects, from `cont` (a previous page's continue) on. */
  async listPage(path: string, query: Record<string, string>, limit: number, cont?: string, signal?: AbortSignal): Promise<ListPage> {
    const q = new URLSearchParams({ ...query, limit: String(limit) });
    if (cont) q.set('continue', cont);
    this.sent.lists++;
    const page = await this.get<{ items: KubeObject[]; metadata: { continue?: string; resourceVersion: string; remainingItemCount?: number }; apiVersion: string; kind: string }>(`${path}?${q}`, signal);
    // List items carry no apiVersion/kind; restore them from the list's own.
    const apiVersion = page.apiVersion;
    const kind = page.kind.replace(/List$/, '');
    for (const it of page.items) {
      it.apiVersion ??= apiVersion;
      it.kind ??= kind;
    }
    const { continue: next, resourceVersion, remainingItemCount } = page.metadata;
    return { items: page.items, resourceVersion, ...(next ? { continue: next } : {}), ...(typeof remainingItemCount === 'number' ? { remainingItemCount } : {}) };
  }

  async version(signal?: AbortSignal): Promise<{ gitVersion: string; major: string; minor: string }> {
    return this.get('/version', signal);
  }

  private discovery?: { at: number; result: Promise<Discovery> };

  /**
   * Every resource the server serves, at each group's preferred version. Cached for `maxAgeMs`
   * (default 60 s), like kubectl's discovery cache: a controller asks on every reconcile and
   * every sync, and the answer is ~20 requests that rarely change. A failed answer is not kept.
   */
  async discover(maxAgeMs = 60_000): Promise<ResourceType[]> {
    return (await this.discoverAll(maxAgeMs)).types;
  }

  /**
   * Discovery with the API groups that did not answer (an aggregated API answering 503, a group
   * being removed): their types are missing from `types` for now, which is not the same as not
   * existing.
   */
  discoverAll(maxAgeMs = 60_000): Promise<Discovery> {
    const hit = this.discovery;
    if (hit && Date.now() - hit.at < maxAgeMs) return hit.result;
    const result = this.discoverNow();
    this.discovery = { at: Date.now(), result };
    result.catch(() => {
      if (this.discovery?.result === result) this.discovery = undefined;
    });
    return result;
  }

  private async discoverNow(): Promise<Discovery> {
    const out: ResourceType[] = [];
    const unavailable: { group: string; message: string }[] = [];
    const add = (list: ApiResourceList, group: string, version: string) => {
      for (const r of list.resources) {
        out.push({
          group, version, resource: r.name, kind: r.kind, namespaced: r.namespaced, verbs: r.verbs,
          singular: r.singularName || r.kind.toLowerCase(), shortNames: r.shortNames ?? [],
        });
      }
    };
    const [core, groups, version] = await Promise.all([
      this.get<ApiResourceList>('/api/v1'),
      this.get<{ groups: { name: string; preferredVersion: { groupVersion: string; version: string } }[] }>('/apis'),
      this.version(),
    ]);
    add(core, '', 'v1');
    const lists = await Promise.all(
      groups.groups.map(async (g) => {
        try {
          return { g, list: await this.get<ApiResourceList>(`/apis/${g.preferredVersion.groupVersion}`) };
        } catch (err) {
          // An unavailable group (metrics-server down, a CRD being replaced) must not stop
          // discovery of the rest; callers learn which groups are missing.
          unavailable.push({ group: g.name, message: err instanceof Error ? err.message : String(err) });
          return undefined;
        }
      }),
    );
    for (const x of lists) if (x) add(x.list, x.g.name, x.g.preferredVersion.version);
    return { types: out, unavailable: unavailable.sort((a, b) => a.group.localeCompare(b.group)), serverVersion: version.gitVersion };
  }
}

export function resourcePath(t: Pick<ResourceType, 'group' | 'version' | 'resource'>, namespace?: string, name?: string): string {
  const base = t.group === '' ? `/api/${t.version}` : `/apis/${t.group}/${t.version}`;
  const ns = namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${base}${ns}/${t.resource}${name ? `/${encodeURIComponent(name)}` : ''}`;
}

function readAll(res: http.IncomingMessage, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (err?: unknown) => {
      if (done) return;
      done = true;
      signal?.removeEventListener('abort', onAbort);
      if (err !== undefined) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const onAbort = () => {
      res.destroy();
      finish(signal?.reason ?? new Error('aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => finish());
    res.on('error', (e) => finish(e));
    res.on('close', () => finish(res.complete ? undefined : new Error('response closed early')));
  });
}

function toApiError(status: number, text: string, method: string, path: string): KubeApiError {
  let reason = '';
  let message = text;
  try {
    const s = JSON.parse(text) as { reason?: string; message?: string };
    reason = s.reason ?? '';
    message = s.message ?? text;
  } catch {
    /* not a Status object */
  }
  return new KubeApiError(status, reason, `${method} ${path}: ${status} ${reason}: ${message}`);
}
