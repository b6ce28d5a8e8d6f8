// A recording stand-in for SSH, for tests of the reconcilers' decisions against the real API server
// (test/integration/machine-reconcile.test.ts): every host is a script of what its shell answers to
// the provider's scripts (preflight, the bootstrap run, the reset), and everything run or uploaded
// is recorded. It is not a host: the real SSH transport and real hosts are tested in test/e2e.
import { buffer } from 'node:stream/consumers';
import type { Readable } from 'node:stream';
import { AuthFailed, HostUnreachable, type SshRunner, type SshSession } from '../../provider/ssh/index.ts';
import type { ExecOptions, ExecResult, Target } from '../../provider/ssh/target.ts';

export interface FakeHost {
  /** The preflight's output (key=value lines); default: a clean Debian host. */
  preflight?: string;
  /** How the bootstrap ends; 'interrupted' dies without an exit code (the host lost power). */
  bootstrap: 'ok' | 'fail' | 'interrupted';
  /** Held until released: the bootstrap is "running" meanwhile. */
  gate?: Promise<void>;
  /** What the reset leaves behind (leftover= lines). */
  leftovers: string[];
  /** Connections fail so. */
  refuse?: 'auth' | 'unreachable';
  /** Recorded. */
  commands: string[];
  uploads: Map<string, string>;
  /** How many times the bootstrap was started (attaching does not count). */
  started: number;
  runState: 'none' | 'running' | 'ended';
}

export const cleanPreflight = (now = Math.round(Date.now() / 1000)) =>
  [
    'os=debian 12',
    'kernel=6.1.0',
    'arch=x86_64',
    'cpus=2',
    'memory_kib=2048000',
    'swap_kib=0',
    `epoch=${now}`,
    'uid=0',
  ].join('\n');

export function fakeHost(o: Partial<FakeHost> = {}): FakeHost {
  return { bootstrap: 'ok', leftovers: [], commands: [], uploads: new Map(), started: 0, runState: 'none', ...o };
}

const ok = (stdout = ''): ExecResult => ({ exitCode: 0, stdout, stderr: '' });

class FakeSession implements SshSession {
  readonly target: Target;
  readonly hostKeyFingerprint = 'SHA256:fake-host-key';
  readonly hostKeyFirstUse = false;
  readonly jump?: { hostKeyFingerprint: string; hostKeyFirstUse: boolean };
  readonly #h: FakeHost;
  constructor(t: Target, h: FakeHost) {
    this.target = t;
    this.#h = h;
    const j = t.jump?.hostKey;
    if (j) {
      const recorded = j.kind === 'trust-on-first-use' ? j.recorded : undefined;
      this.jump = {
        hostKeyFingerprint: 'SHA256:fake-jump-host-key',
        hostKeyFirstUse: j.kind === 'trust-on-first-use' && !recorded,
      };
    }
  }

  exec(command: string, o: ExecOptions = {}): Promise<ExecResult> {
    const h = this.#h;
    h.commands.push(command);
    if (command.includes('CAPBM-RUN')) return this.#bootstrap(o);
    if (command.includes('echo "os=')) return Promise.resolve(ok(h.preflight ?? cleanPreflight()));
    if (command === 'id -u') return Promise.resolve(ok('0\n'));
    if (command.startsWith('test -f ')) return Promise.resolve({ ...ok(), exitCode: h.runState === 'none' ? 1 : 0 });
    if (command.includes('kubeadm reset'))
      return Promise.resolve(ok(h.leftovers.map((l) => `leftover=${l}\n`).join('')));
    return Promise.resolve(ok());
  }

  async #bootstrap(o: ExecOptions): Promise<ExecResult> {
    const h = this.#h;
    const say = (l: string) => o.onLine?.(l, 'stdout');
    if (h.runState === 'none') {
      h.started++;
      h.runState = 'running';
      say('CAPBM-RUN started');
    } else say('CAPBM-RUN attached');
    say('CAPBM-STEP write_files.0 start');
    await h.gate;
    say('CAPBM-STEP write_files.0 done');
    say('CAPBM-STEP runcmd.0 start');
    if (h.bootstrap === 'fail') {
      say('[capbm runcmd.0] kubeadm: error execution phase preflight');
      say('CAPBM-STEP runcmd.0 fail 1');
      h.runState = 'ended';
      say('CAPBM-RUN rc=1');
      return ok();
    }
    if (h.bootstrap === 'interrupted') {
      h.runState = 'none';
      say('CAPBM-RUN rc=none');
      return ok();
    }
    say('CAPBM-STEP runcmd.0 done');
    h.runState = 'ended';
    say('CAPBM-RUN rc=0');
    say('CAPBM-RUN sentinel');
    return ok();
  }

  async upload(path: string, content: string | Buffer | Readable): Promise<void> {
    this.#h.uploads.set(
      path,
      (typeof content === 'string' || Buffer.isBuffer(content) ? content : await buffer(content)).toString(),
    );
  }

  close(): void {}
}

export class FakeSsh implements SshRunner {
  readonly hosts = new Map<string, FakeHost>();
  connections = 0;

  host(address: string): FakeHost {
    let h = this.hosts.get(address);
    if (!h) this.hosts.set(address, (h = fakeHost()));
    return h;
  }

  async withHost<T>(t: Target, fn: (c: SshSession) => Promise<T>): Promise<T> {
    this.connections++;
    const h = this.host(t.host);
    const ctx = { host: t.host, port: t.port ?? 22, user: t.user };
    if (h.refuse === 'auth') throw new AuthFailed(ctx);
    if (h.refuse === 'unreachable') throw new HostUnreachable(ctx, 'ECONNREFUSED');
    return fn(new FakeSession(t, h));
  }
}
