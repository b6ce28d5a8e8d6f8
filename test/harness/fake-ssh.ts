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
  /** Whether the gate opened. */
  released?: boolean;
  /** What the reset leaves behind (leftover= lines). */
  leftovers: string[];
  /** Connections fail so. */
  refuse?: 'auth' | 'unreachable';
  /** Recorded. */
  commands: string[];
  uploads: Map<string, string>;
  /** How many times the bootstrap was started (attaching does not count). */
  started: number;
  /** none: no run, or one that died (its script gone: a start needs a new upload). */
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
  const h: FakeHost = {
    bootstrap: 'ok',
    leftovers: [],
    commands: [],
    uploads: new Map(),
    started: 0,
    runState: 'none',
    ...o,
  };
  void h.gate?.then(() => (h.released = true));
  return h;
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

  exec(command: string, _o: ExecOptions = {}): Promise<ExecResult> {
    const h = this.#h;
    h.commands.push(command);
    if (command.includes('CAPBM-CHECK')) return Promise.resolve(this.#check(command));
    if (command.includes('CAPBM-RUN')) return Promise.resolve(this.#start());
    if (command.includes('echo "os=')) return Promise.resolve(ok(h.preflight ?? cleanPreflight()));
    if (command === 'id -u') return Promise.resolve(ok('0\n'));
    if (command.includes('kubeadm reset'))
      return Promise.resolve(ok(h.leftovers.map((l) => `leftover=${l}\n`).join('')));
    return Promise.resolve(ok());
  }

  /** host-ops.ts startBootstrap: start (with a script uploaded), attach, or say the run ended. */
  #start(): ExecResult {
    const h = this.#h;
    if (h.runState === 'ended') return ok('CAPBM-RUN ended\n');
    if (h.runState === 'running') return ok('CAPBM-RUN attached\n');
    const script = [...h.uploads.keys()].find((p) => p.endsWith('/bootstrap.sh.new'));
    if (!script) return ok('CAPBM-RUN no-script\n');
    h.uploads.delete(script);
    h.started++;
    h.runState = 'running';
    return ok('CAPBM-RUN started\n');
  }

  /** host-ops.ts checkBootstrap: running until the gate opens, then it ends as h.bootstrap says. */
  #check(command: string): ExecResult {
    const h = this.#h;
    const offset = Number(/^o=(\d+)$/m.exec(command)?.[1] ?? 0);
    const lines = ['CAPBM-STEP write_files.0 start'];
    let state = { rc: 'none', alive: 'no', sentinel: 'no' };
    if (h.runState === 'running' && h.gate && !h.released) state = { ...state, alive: 'yes' };
    else if (h.runState !== 'none' || h.bootstrap !== 'interrupted') {
      lines.push('CAPBM-STEP write_files.0 done', 'CAPBM-STEP runcmd.0 start');
      if (h.bootstrap === 'fail') {
        lines.push('[capbm runcmd.0] kubeadm: error execution phase preflight', 'CAPBM-STEP runcmd.0 fail 1');
        state = { ...state, rc: '1' };
        h.runState = 'ended';
      } else if (h.bootstrap === 'interrupted') {
        h.runState = 'none';
      } else {
        lines.push('CAPBM-STEP runcmd.0 done', 'CAPBM-RESULT ok');
        state = { rc: '0', alive: 'no', sentinel: 'yes' };
        h.runState = 'ended';
      }
    }
    const log = Buffer.from(lines.join('\n') + '\n');
    const head = `CAPBM-CHECK rc=${state.rc} alive=${state.alive} sentinel=${state.sentinel} size=${log.length}`;
    return ok(`${head}\n${log.subarray(offset).toString('base64')}\n`);
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
