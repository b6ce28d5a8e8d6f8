// A Git server for GitOps tests and the lab: Git's own smart-HTTP server (`git http-backend`, a
// CGI program) behind a small Node HTTP server, serving every bare repository under one folder.
// Fetch and push both work (http.receivepack is enabled per repository), so a test or a user
// clones, commits and pushes as they would to any Git host, and Flux's GitRepository reads it
// over http://. Plus helpers to create a repository and commit to it from a work tree.
import { execa } from 'execa';
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, GiveUp, startProcess, tail, waitFor, type ManagedProcess } from './process.ts';

export interface GitServerOptions {
  /** The folder holding the bare repositories (GIT_PROJECT_ROOT). Created if missing. */
  root: string;
  /** Address to listen on. Default 127.0.0.1 (the lab may use its bridge address). */
  host?: string;
  /** Port. Default: any free one. */
  port?: number;
}

export interface GitServer {
  root: string;
  /** http://<host>:<port> */
  url: string;
  /** The clone URL of a repository: <url>/<name>.git */
  repoUrl(name: string): string;
  /** Creates an empty bare repository <name>.git (default branch main) that accepts pushes. */
  createRepo(name: string): Promise<string>;
  stop(): Promise<void>;
}

/** Who commits in tests: a fixed identity, whatever the machine's git configuration says. */
const gitEnv = {
  GIT_AUTHOR_NAME: 'CAPBM Test',
  GIT_AUTHOR_EMAIL: 'test@capbm.invalid',
  GIT_COMMITTER_NAME: 'CAPBM Test',
  GIT_COMMITTER_EMAIL: 'test@capbm.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_TERMINAL_PROMPT: '0',
};

/** Runs git with the test identity; fails with the command and git's stderr. */
export async function git(cwd: string, args: string[]): Promise<string> {
  const r = await execa('git', args, { cwd, env: gitEnv, reject: false });
  if (r.exitCode !== 0) {
    throw new Error(
      `git ${args.join(' ')} failed in ${cwd} (exit ${r.exitCode}): ${r.stderr.trim() || r.stdout.trim()}`,
    );
  }
  return r.stdout.trim();
}

/** The CGI environment of one request (RFC 3875, plus what git http-backend reads). */
function cgiEnv(req: IncomingMessage, root: string): NodeJS.ProcessEnv {
  const url = new URL(req.url ?? '/', 'http://git');
  const h = req.headers;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    GIT_PROJECT_ROOT: root,
    GIT_HTTP_EXPORT_ALL: '1',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    REQUEST_METHOD: req.method ?? 'GET',
    PATH_INFO: decodeURIComponent(url.pathname),
    QUERY_STRING: url.search.slice(1),
    REMOTE_ADDR: req.socket.remoteAddress ?? '',
  };
  if (h['content-type']) env.CONTENT_TYPE = h['content-type'];
  if (h['content-length']) env.CONTENT_LENGTH = h['content-length'];
  if (h['content-encoding']) env.HTTP_CONTENT_ENCODING = h['content-encoding'];
  if (typeof h['git-protocol'] === 'string') env.GIT_PROTOCOL = h['git-protocol'];
  return env;
}

/** Splits a CGI response head ("Status: 200 OK", headers) from its body. */
function parseCgiHead(head: string): { status: number; headers: Record<string, string> } {
  const headers: Record<string, string> = {};
  let status = 200;
  for (const line of head.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const [name, value] = [line.slice(0, i).trim(), line.slice(i + 1).trim()];
    if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
    else headers[name] = value;
  }
  return { status, headers };
}

/** Serves one request through git http-backend, streaming both ways. */
function serveGit(req: IncomingMessage, res: ServerResponse, root: string): void {
  const cgi = spawn('git', ['http-backend'], { env: cgiEnv(req, root), stdio: ['pipe', 'pipe', 'pipe'] });
  let head = Buffer.alloc(0);
  let started = false;
  let stderr = '';
  cgi.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  cgi.stdout.on('data', (chunk: Buffer) => {
    if (started) return void res.write(chunk);
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n') >= 0 ? head.indexOf('\r\n\r\n') + 4 : head.indexOf('\n\n') + 2;
    if (end < 2) return;
    const { status, headers } = parseCgiHead(head.subarray(0, end).toString());
    res.writeHead(status, headers);
    started = true;
    res.write(head.subarray(end));
  });
  // A failure before the CGI head: a 500 with git's words ('error' and 'close' may both come).
  const fail = (why: string) => {
    if (res.writableEnded) return;
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(why);
  };
  cgi.on('close', (code) => {
    if (started) res.end();
    else fail(`git http-backend failed (exit ${code}): ${stderr}`);
  });
  cgi.on('error', (err) => fail(`could not run git http-backend: ${err.message}`));
  cgi.stdin.on('error', () => {}); // the backend may exit before reading the whole request
  req.pipe(cgi.stdin);
}

/** Creates an empty bare repository <root>/<name>.git (default branch main) that accepts pushes over HTTP. */
export async function createBareRepo(root: string, name: string): Promise<string> {
  const dir = join(root, `${name}.git`);
  await git(root, ['init', '--quiet', '--bare', '--initial-branch=main', dir]);
  await git(dir, ['config', 'http.receivepack', 'true']);
  return dir;
}

/** Starts the server in this Node process; resolves once it listens. */
export async function startGitServer(o: GitServerOptions): Promise<GitServer> {
  mkdirSync(o.root, { recursive: true });
  const host = o.host ?? '127.0.0.1';
  const server: Server = createServer((req, res) => serveGit(req, res, o.root));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, host, () => resolve());
  });
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('the Git server did not report its port');
  const url = `http://${host}:${addr.port}`;
  return {
    root: o.root,
    url,
    repoUrl: (name) => `${url}/${name}.git`,
    createRepo: (name) => createBareRepo(o.root, name),
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A clone to change a repository from, as a user's checkout. */
export interface WorkTree {
  dir: string;
  /** Writes a file (relative path; folders are created). */
  write(path: string, content: string): void;
  /** Removes a file or folder. */
  remove(path: string): void;
  /** Commits every change and pushes to main; resolves with the new commit's SHA. */
  commitAndPush(message: string): Promise<string>;
}

/** Clones `url` into `dir` (an empty repository too) with branch main checked out. */
export async function cloneRepo(url: string, dir: string): Promise<WorkTree> {
  mkdirSync(dirname(dir), { recursive: true });
  await git(dirname(dir), ['clone', '--quiet', url, dir]);
  // An empty repository has no branch to check out yet: name the first one main.
  await git(dir, ['symbolic-ref', 'HEAD', 'refs/heads/main']);
  return {
    dir,
    write: (path, content) => {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), content);
    },
    remove: (path) => rmSync(join(dir, path), { recursive: true, force: true }),
    commitAndPush: async (message) => {
      await git(dir, ['add', '--all']);
      await git(dir, ['commit', '--quiet', '--message', message]);
      await git(dir, ['push', '--quiet', 'origin', 'HEAD:refs/heads/main']);
      return git(dir, ['rev-parse', 'HEAD']);
    },
  };
}

/**
 * The same server as a process of its own (`node test/harness/git-server.ts ROOT HOST PORT`), for
 * the lab: with `persistent` it outlives the Node process that started it, like the lab's others.
 */
export async function startGitServerProcess(
  o: GitServerOptions & { logFile: string; persistent?: boolean },
): Promise<GitServer & { process: ManagedProcess }> {
  mkdirSync(o.root, { recursive: true });
  const host = o.host ?? '127.0.0.1';
  const port = o.port ?? (await freePort(host));
  const url = `http://${host}:${port}`;
  const proc = startProcess({
    name: 'git-server',
    command: process.execPath,
    args: [fileURLToPath(import.meta.url), o.root, host, String(port)],
    logFile: o.logFile,
    ...(o.persistent ? { persistent: true } : {}),
  });
  await waitFor(
    `the Git server on ${url}`,
    async () => {
      if (!proc.running()) throw new GiveUp(`the Git server exited:\n${tail(proc.logFile)}`);
      return (await fetch(url).catch(() => undefined)) ? true : undefined;
    },
    30_000,
    100,
  );
  return {
    root: o.root,
    url,
    repoUrl: (name) => `${url}/${name}.git`,
    createRepo: (name) => createBareRepo(o.root, name),
    process: proc,
    stop: () => proc.stop(),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [root, host, port] = process.argv.slice(2);
  if (!root) throw new Error('usage: node test/harness/git-server.ts ROOT [HOST] [PORT]');
  const server = await startGitServer({ root, ...(host ? { host } : {}), ...(port ? { port: Number(port) } : {}) });
  console.log(`serving the Git repositories in ${root} at ${server.url}`);
}
