// A real Git smart-HTTP server for tests: node:http in front of Debian's `git http-backend` (CGI),
// serving the bare repositories under a root folder at http://127.0.0.1:<port>/<name>.git.
// It runs in a child process (run this file directly), so a test that calls the git CLI
// synchronously can never deadlock against it; startGitServer() spawns and stops it by PID.
//
//   tsx test/env/git-server.ts --root <dir> [--user name:password] [--port N]
//
// Failures can be injected while it runs (GitServer.fault): every request whose path and query
// contain `match` is answered with `status`, or delayed by `delayMs` first, until cleared; and
// users added or their passwords changed (GitServer.setUser), as a rotation of credentials.
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface GitServer {
  root: string;
  port: number;
  /** http://user:pass@127.0.0.1:port for the git CLI; the base for isomorphic-git is `base`. */
  base: string;
  user: string;
  password: string;
  /** Creates an empty bare repository with `main` as its default branch and returns its URL. */
  createRepo(name: string): Promise<string>;
  /** Runs the git CLI (async) with credentials for this server. */
  git(args: string[], cwd?: string): Promise<string>;
  /** Clones `name` into a fresh temp folder and returns it. */
  clone(name: string): Promise<string>;
  /** Injects a failure into the requests that contain `match` (default: all); undefined clears it. */
  fault(f: Fault | undefined): Promise<void>;
  /** Requests the current fault has caught so far (a delayed one counts when it arrives). */
  faultHits(): Promise<number>;
  /** Adds a user, changes its password (the old one is refused from now on), or removes it (undefined). */
  setUser(name: string, password: string | undefined): Promise<void>;
  stop(): Promise<void>;
}

export interface Fault {
  /** Answer with this HTTP status (e.g. 503) instead of serving. */
  status?: number;
  /** Wait this long before serving (or failing). */
  delayMs?: number;
  /** Only requests whose path+query contain this, e.g. "git-receive-pack" for pushes. */
  match?: string;
}

const FAULT_PATH = '/_test/fault';
const USERS_PATH = '/_test/users';

function serve(root: string, users: Record<string, string>, port: number): Promise<http.Server> {
  let fault: Fault | undefined;
  let hits = 0;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === FAULT_PATH && req.method === 'PUT') {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        fault = body ? (JSON.parse(body) as Fault) : undefined;
        hits = 0;
        res.writeHead(204).end();
      });
      return;
    }
    if (url.pathname === FAULT_PATH) {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ hits }));
      return;
    }
    if (url.pathname === USERS_PATH && req.method === 'PUT') {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        const { name, password } = JSON.parse(body) as { name: string; password?: string };
        if (password === undefined) delete users[name];
        else users[name] = password;
        res.writeHead(204).end();
      });
      return;
    }
    const f = fault && (!fault.match || `${url.pathname}${url.search}`.includes(fault.match)) ? fault : undefined;
    if (f) {
      hits++;
      const go = () => {
        if (f.status) {
          req.resume();
          res.writeHead(f.status, { 'Content-Type': 'text/plain' }).end(`injected failure ${f.status}\n`);
        } else handle(req, res, url);
      };
      if (f.delayMs) setTimeout(go, f.delayMs);
      else go();
      return;
    }
    handle(req, res, url);
  });
  const handle = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => {
    const m = /^Basic (.+)$/.exec(req.headers.authorization ?? '');
    const [u, p] = m ? Buffer.from(m[1]!, 'base64').toString().split(/:(.*)/s) : [];
    if (!u || users[u] !== p) {
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="git"' });
      res.end('authentication required\n');
      return;
    }
    const cgi = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: decodeURIComponent(url.pathname),
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
        GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
        REMOTE_USER: u, // a non-empty REMOTE_USER enables receive-pack (push)
        REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
      },
    });
    req.pipe(cgi.stdin);
    cgi.stderr.on('data', (d: Buffer) => process.stderr.write(`[git-http-backend] ${d.toString()}`));
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const sep = head.indexOf('\r\n\r\n');
      if (sep < 0) return;
      headersDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, sep).toString().split('\r\n')) {
        const i = line.indexOf(':');
        const k = line.slice(0, i).trim();
        const v = line.slice(i + 1).trim();
        if (k.toLowerCase() === 'status') status = parseInt(v, 10);
        else headers[k] = v;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(sep + 4));
    });
    cgi.on('close', () => {
      if (!headersDone) res.writeHead(500);
      res.end();
    });
  };
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

export async function startGitServer(opts: { user?: string; password?: string } = {}): Promise<GitServer> {
  const root = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'drs-git-'));
  const user = opts.user ?? 'dr';
  const password = opts.password ?? 's3cret';
  const self = fileURLToPath(import.meta.url);
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', self, '--root', root, '--user', `${user}:${password}`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`git server exited with ${code}`)));
  });
  // An interrupted test run must not leave the server behind.
  const killChild = () => child.kill('SIGKILL');
  process.once('exit', killChild);
  const base = `http://127.0.0.1:${port}`;
  const withCreds = `http://${user}:${password}@127.0.0.1:${port}`;
  const git = async (args: string[], cwd?: string) => {
    const { stdout } = await execFileAsync('git', args, {
      cwd, env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_AUTHOR_NAME: 'test', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 'test', GIT_COMMITTER_EMAIL: 't@example.com' },
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  };
  const clones: string[] = [];
  return {
    root, port, base: withCreds, user, password,
    async createRepo(name) {
      await git(['init', '-q', '--bare', '-b', 'main', path.join(root, `${name}.git`)]);
      await git(['config', '--file', path.join(root, `${name}.git`, 'config'), 'http.receivepack', 'true']);
      return `${base}/${name}.git`;
    },
    git,
    async clone(name) {
      const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'drs-clone-'));
      clones.push(dir); // removed by stop()
      await git(['clone', '-q', `${withCreds}/${name}.git`, dir]);
      return dir;
    },
    async fault(f) {
      const res = await fetch(`${base}${FAULT_PATH}`, { method: 'PUT', body: f ? JSON.stringify(f) : '' });
      if (res.status !== 204) throw new Error(`git server: setting the fault failed with ${res.status}`);
    },
    async setUser(name, password) {
      const res = await fetch(`${base}${USERS_PATH}`, { method: 'PUT', body: JSON.stringify({ name, password }) });
      if (res.status !== 204) throw new Error(`git server: setting user ${name} failed with ${res.status}`);
    },
    async faultHits() {
      const res = await fetch(`${base}${FAULT_PATH}`);
      return ((await res.json()) as { hits: number }).hits;
    },
    async stop() {
      process.removeListener('exit', killChild);
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      await fs.promises.rm(root, { recursive: true, force: true });
      await Promise.all(clones.map((d) => fs.promises.rm(d, { recursive: true, force: true })));
    },
  };
}

// Run as a program: serve until killed.
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  if (process.argv.includes('--help')) {
    console.log('usage: tsx test/env/git-server.ts --root <dir> [--user name:password] [--port N]');
    process.exit(0);
  }
  const root = arg('--root');
  if (!root) {
    console.error('--root <dir> is required');
    process.exit(2);
  }
  const [u, p] = (arg('--user') ?? 'dr:s3cret').split(/:(.*)/s);
  const server = await serve(root, { [u!]: p ?? '' }, Number(arg('--port') ?? 0));
  const addr = server.address();
  console.log(`listening on ${typeof addr === 'object' && addr ? addr.port : 0}`);
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
