// The two smart-HTTP exchanges we do without isomorphic-git: the ref advertisement
// (GET info/refs, one round trip to learn the branch tip) and receive-pack (POST our own pack
// with a compare-and-swap ref update). Protocol: gitprotocol-http(5), gitprotocol-pack(5).
import http from 'node:http';
import https from 'node:https';
import { VERSION } from '../../version.ts';
import { FLUSH_PKT, parsePktLines, pktLine, ZERO_OID } from './objects.ts';

export interface Credentials {
  username: string;
  password: string;
}

/** 401/403 from the server. */
export class GitAuthError extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

export class GitHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface Response {
  status: number;
  contentType: string;
  body: Buffer;
  /** The URL that answered, after redirects. */
  url: string;
}

const USER_AGENT = `git/dr-syncer-${VERSION}`;
// Idle time, not total: a big push can keep the server busy (index-pack) without a byte sent.
const TIMEOUT_MS = 300_000;

/** Splits user:password out of a URL (isomorphic-git accepts them there too). */
export function splitUrl(raw: string): { url: string; credentials?: Credentials } {
  const u = new URL(raw);
  if (!u.username && !u.password) return { url: raw.replace(/\/+$/, '') };
  const credentials = { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) };
  u.username = '';
  u.password = '';
  return { url: u.toString().replace(/\/+$/, ''), credentials };
}

function send(url: string, method: string, headers: Record<string, string>, body: Buffer[] | undefined, credentials: Credentials | undefined, redirects = 5): Promise<Response> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const h: Record<string, string> = { 'User-Agent': USER_AGENT, ...headers };
    if (credentials) h.Authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
    if (body) h['Content-Length'] = String(body.reduce((n, b) => n + b.length, 0));
    const req = (u.protocol === 'https:' ? https : http).request(u, { method, headers: h }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        const location = res.headers.location;
        if (method === 'GET' && location && [301, 302, 303, 307, 308].includes(status) && redirects > 0) {
          const next = new URL(location, u);
          // Credentials only ever go to the origin they were given for.
          const creds = next.origin === u.origin ? credentials : undefined;
          send(next.toString(), method, headers, body, creds, redirects - 1).then(resolve, reject);
          return;
        }
        resolve({ status, contentType: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks), url });
      });
    });
    req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error(`no answer from ${u.host} in ${TIMEOUT_MS / 1000}s`)));
    req.on('error', reject);
    // The pack goes out as it is, not copied into one request buffer.
    for (const b of body ?? []) req.write(b);
    req.end();
  });
}

function check(res: Response, what: string): void {
  if (res.status === 401 || res.status === 403) throw new GitAuthError(res.status);
  if (res.status !== 200) {
    const text = res.body.subarray(0, 200).toString('utf8').trim();
    throw new GitHttpError(res.status, `${what}: HTTP ${res.status}${text ? `: ${text}` : ''}`);
  }
}

export interface Advertisement {
  /** Ref name → oid; empty for an empty repository. */
  refs: Map<string, string>;
  capabilities: Set<string>;
  /** Where to POST the service request (the URL after redirects, without /info/refs). */
  serviceUrl: string;
}

export function parseAdvertisement(body: Buffer, service: string): Omit<Advertisement, 'serviceUrl'> {
  const lines = parsePktLines(body);
  let i = 0;
  // A smart server starts with "# service=..." and a flush.
  if (lines[0]?.toString('utf8').startsWith('# service=')) {
    if (lines[0].toString('utf8').trim() !== `# service=${service}`) throw new Error(`unexpected service line ${JSON.stringify(lines[0].toString('utf8'))}`);
    i = lines[1] === null ? 2 : 1;
  }
  const refs = new Map<string, string>();
  let capabilities = new Set<string>();
  for (let first = true; i < lines.length; i++) {
    const line = lines[i];
    if (line === null || line === undefined) break;
    let text = line.toString('utf8').replace(/\n$/, '');
    if (first) {
      first = false;
      const nul = text.indexOf('\0');
      if (nul >= 0) {
        capabilities = new Set(text.slice(nul + 1).split(' ').filter(Boolean));
        text = text.slice(0, nul);
      }
    }
    const m = /^([0-9a-f]{40}) (\S+)$/.exec(text);
    if (!m) throw new Error(`unexpected ref advertisement line ${JSON.stringify(text)}`);
    if (m[2] === 'capabilities^{}' || m[2]!.endsWith('^{}')) continue;
    refs.set(m[2]!, m[1]!);
  }
  return { refs, capabilities };
}

export async function advertisement(url: string, service: 'git-upload-pack' | 'git-receive-pack', credentials: Credentials | undefined): Promise<Advertisement> {
  const res = await send(`${url}/info/refs?service=${service}`, 'GET', { Accept: '*/*', Pragma: 'no-cache' }, undefined, credentials);
  check(res, `${url}/info/refs`);
  if (!res.contentType.startsWith(`application/x-${service}-advertisement`)) {
    throw new Error(`${url} is not a smart-HTTP Git repository (content type "${res.contentType}")`);
  }
  return { ...parseAdvertisement(res.body, service), serviceUrl: res.url.replace(/\/info\/refs\?.*$/, '') };
}

export interface RefUpdate {
  ref: string;
  /** The value the server must still have (ZERO_OID: the ref must not exist). */
  old: string;
  new: string;
}

export interface PushReport {
  /** "ok", or the reason the server could not unpack. */
  unpack: string;
  /** Ref → undefined when updated, else the server's reason. */
  refs: Map<string, string | undefined>;
}

export function parseReport(body: Buffer, sideband: boolean): PushReport {
  let data = body;
  if (sideband) {
    const parts: Buffer[] = [];
    for (const pkt of parsePktLines(body)) {
      if (!pkt || pkt.length === 0) continue;
      const band = pkt[0];
      if (band === 1) parts.push(pkt.subarray(1));
      else if (band === 3) throw new Error(`remote error: ${pkt.subarray(1).toString('utf8').trim()}`);
    }
    data = Buffer.concat(parts);
  }
  const report: PushReport = { unpack: '', refs: new Map() };
  for (const pkt of parsePktLines(data)) {
    if (!pkt) continue;
    const line = pkt.toString('utf8').replace(/\n$/, '');
    if (line.startsWith('unpack ')) report.unpack = line.slice(7);
    else if (line.startsWith('ok ')) report.refs.set(line.slice(3), undefined);
    else if (line.startsWith('ng ')) {
      const rest = line.slice(3);
      const sp = rest.indexOf(' ');
      report.refs.set(sp < 0 ? rest : rest.slice(0, sp), sp < 0 ? 'rejected' : rest.slice(sp + 1));
    }
  }
  if (!report.unpack) throw new Error(`no report-status in the receive-pack answer: ${JSON.stringify(data.subarray(0, 200).toString('utf8'))}`);
  return report;
}

/** Sends one ref update and its pack; the server checks `old` under its ref lock. */
export async function receivePack(adv: Advertisement, update: RefUpdate, pack: Buffer, credentials: Credentials | undefined): Promise<PushReport> {
  const sideband = adv.capabilities.has('side-band-64k');
  const caps = ['report-status', ...(sideband ? ['side-band-64k'] : []), ...(adv.capabilities.has('quiet') ? ['quiet'] : []), `agent=${USER_AGENT.slice(4)}`];
  const command = pktLine(`${update.old || ZERO_OID} ${update.new} ${update.ref}\0${caps.join(' ')}`);
  const res = await send(`${adv.serviceUrl}/git-receive-pack`, 'POST', {
    'Content-Type': 'application/x-git-receive-pack-request',
    Accept: 'application/x-git-receive-pack-result',
  }, [command, FLUSH_PKT, pack], credentials);
  check(res, `${adv.serviceUrl}/git-receive-pack`);
  return parseReport(res.body, sideband);
}
