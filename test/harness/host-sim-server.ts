// The host simulator's process (started by host-sim-net.ts inside its own network namespace): one
// TCP listener on :22 for every address of the namespace; the address a connection came to picks
// the host, its own ed25519 host key and its state (host-sim.ts). Key auth against one authorized
// public key, users root only; exec channels only (no shell, no pty, no forwarding).
// Control: HTTP on a Unix socket: GET /stats (SimStats), GET /hosts (address, host key fingerprint).
//   node host-sim-server.ts ADDRESSES_FILE AUTHORIZED_KEY_FILE BOOTSTRAP_MS CONTROL_SOCKET HOSTS_OUT
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as httpServer } from 'node:http';
import { createServer, type Socket } from 'node:net';
import ssh2 from 'ssh2';
import { fingerprint } from '../../provider/ssh/hostkey.ts';
import { answer, newStats, simHost, type SimHost, type SimOptions } from './host-sim.ts';

const [addressesFile, authorizedFile, bootstrapMs, controlSocket, hostsOut] = process.argv.slice(2);
if (!hostsOut) throw new Error('usage: host-sim-server.ts ADDRESSES_FILE AUTHORIZED_KEY_FILE BOOTSTRAP_MS SOCKET OUT');
const addresses = readFileSync(addressesFile!, 'utf8').split('\n').filter(Boolean);
const parsed = ssh2.utils.parseKey(readFileSync(authorizedFile!, 'utf8'));
if (parsed instanceof Error) throw new Error(`the authorized key cannot be read: ${parsed.message}`);
const authorized = Array.isArray(parsed) ? parsed[0]! : parsed;
const opts: SimOptions = { bootstrapMs: Number(bootstrapMs), stats: newStats() };

/** An ed25519 host key ssh2 can read back (about 1 in 200 of the keys it generates it cannot parse: measured). */
function hostKey(): { private: string; public: string } {
  for (let i = 0; i < 20; i++) {
    const k = ssh2.utils.generateKeyPairSync('ed25519');
    if (!(ssh2.utils.parseKey(k.private) instanceof Error)) return k;
  }
  throw new Error('ssh2 generated 20 ed25519 host keys it cannot parse');
}

interface Entry {
  host: SimHost;
  key: string;
  server?: ssh2.Server;
}
const hosts = new Map<string, Entry>();
const out: Array<{ address: string; fingerprint: string }> = [];
for (const address of addresses) {
  const k = hostKey();
  hosts.set(address, { host: simHost(address), key: k.private });
  out.push({ address, fingerprint: fingerprint(Buffer.from(k.public.split(' ')[1]!, 'base64')) });
}
writeFileSync(hostsOut, JSON.stringify(out));

function authenticate(ctx: ssh2.AuthContext): void {
  if (ctx.method !== 'publickey' || ctx.username !== 'root') return ctx.reject(['publickey']);
  const same = ctx.key.algo === authorized.type && ctx.key.data.equals(authorized.getPublicSSH());
  if (!same) return ctx.reject(['publickey']);
  if (!ctx.signature) return ctx.accept();
  if (authorized.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) === true) return ctx.accept();
  ctx.reject(['publickey']);
}

function session(h: SimHost, accept: () => ssh2.Session): void {
  const s = accept();
  s.on('exec', (acceptExec, _reject, info) => {
    const stream = acceptExec();
    let input = '';
    const ended = new Promise<string>((resolve) => {
      stream.on('data', (d: Buffer) => (input += d.toString('utf8')));
      stream.on('end', () => resolve(input));
    });
    let done = false;
    const ch = {
      out: (t: string) => void (done || stream.write(t)),
      err: (t: string) => void (done || stream.stderr.write(t)),
      exit: (code: number) => {
        if (done) return;
        done = true;
        stream.exit(code);
        stream.end();
      },
      onClose: undefined as (() => void) | undefined,
    };
    stream.on('close', () => {
      if (!done) ch.onClose?.();
      done = true;
    });
    answer(h, info.command, () => ended, ch, opts);
  });
  for (const what of ['pty', 'shell', 'subsystem', 'env', 'x11', 'auth-agent'] as const)
    s.on(what as 'pty', (_a, reject) => reject?.());
}

function serverOf(e: Entry): ssh2.Server {
  e.server ??= new ssh2.Server({ hostKeys: [e.key] }, (client) => {
    const stats = opts.stats;
    stats.connections++;
    stats.peakOpen = Math.max(stats.peakOpen, ++stats.open);
    client.on('authentication', authenticate);
    client.on('session', (accept) => session(e.host, accept));
    client.on('tcpip', (_a, reject) => reject());
    client.on('error', () => {});
    client.on('close', () => void stats.open--);
  });
  return e.server;
}

const ssh = createServer((sock: Socket) => {
  const e = hosts.get(sock.localAddress?.replace(/^::ffff:/, '') ?? '');
  if (!e) return sock.destroy();
  sock.setNoDelay(true);
  try {
    serverOf(e).injectSocket(sock);
  } catch (err) {
    process.stderr.write(`host ${e.host.address}: ${(err as Error).message}\n`);
    sock.destroy();
  }
});
ssh.listen({ port: 22, host: '0.0.0.0', backlog: 4096 });

rmSync(controlSocket!, { force: true });
const control = httpServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  if (req.url === '/stats') return res.end(JSON.stringify(opts.stats));
  res.statusCode = 404;
  res.end('{"error":"GET /stats"}');
});
control.listen(controlSocket!, () => process.stdout.write(`host-sim ready: ${addresses.length} hosts\n`));
const stop = () => {
  ssh.close();
  control.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
