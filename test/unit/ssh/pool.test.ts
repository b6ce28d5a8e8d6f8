// The pool's kept connections (ControlPersist): used again only for the same identity, never past
// their bounds, and a kept connection found gone before any command reached the host is replaced
// without the caller seeing it. Stand-in connections; the real ones are in test/e2e/ssh.test.ts.
import test from 'ava';
import { HostUnreachable } from '../../../provider/ssh/errors.ts';
import { SshPool, type SshPoolOptions } from '../../../provider/ssh/pool.ts';
import type { Keepable } from '../../../provider/ssh/parked.ts';
import type { ExecResult, Target } from '../../../provider/ssh/target.ts';

class Conn implements Keepable {
  readonly hostKeyFingerprint = 'SHA256:stand-in';
  readonly hostKeyFirstUse = false;
  sessionsOpened = 0;
  lost = false;
  closed = false;
  readonly target: Target;
  constructor(target: Target) {
    this.target = target;
  }
  exec(command: string): Promise<ExecResult> {
    if (this.lost)
      return Promise.reject(new HostUnreachable({ host: this.target.host, port: 22 }, 'connection closed'));
    this.sessionsOpened++;
    return Promise.resolve({ exitCode: 0, stdout: command, stderr: '' });
  }
  async upload(): Promise<void> {}
  close(): void {
    this.closed = true;
    this.lost = true;
  }
}

function pool(o: SshPoolOptions = {}) {
  const opened: Conn[] = [];
  const seen: boolean[] = [];
  const p = new SshPool({
    connect: (t) => {
      const c = new Conn(t);
      opened.push(c);
      return Promise.resolve(c);
    },
    observe: (x) => seen.push(x.connected),
    ...o,
  });
  return { p, opened, seen, open: () => opened.filter((c) => !c.closed).length };
}

const target = (host = '10.250.0.2', o: Partial<Target> = {}): Target => ({
  host,
  user: 'root',
  credentials: { privateKey: 'key-a' },
  hostKey: { kind: 'pinned', fingerprints: ['SHA256:a'] },
  ...o,
});
const run = (p: SshPool, t: Target, cmd = 'true') => p.withHost(t, async (c) => (await c.exec(cmd)).stdout);

test('a second unit of work to the same host as the same identity uses the kept connection', async (t) => {
  const { p, opened, seen } = pool();
  t.is(await run(p, target(), 'one'), 'one');
  t.is(await run(p, target(), 'two'), 'two');
  t.is(opened.length, 1);
  t.deepEqual(seen, [true, false]);
  t.is(p.kept, 1);
  p.close();
  t.true(opened[0]!.closed);
});

test('another key, pin, user, port, privilege or jump host never shares a connection', async (t) => {
  const { p, opened } = pool();
  await run(p, target());
  const others: Partial<Target>[] = [
    { credentials: { privateKey: 'key-b' } },
    { credentials: { privateKey: 'key-a', sudoPassword: 'x' } },
    { hostKey: { kind: 'pinned', fingerprints: ['SHA256:b'] } },
    { hostKey: { kind: 'trust-on-first-use' } },
    { user: 'capbm' },
    { port: 2222 },
    { privilege: 'sudo' },
    {
      jump: {
        host: '10.250.0.9',
        user: 'root',
        credentials: { privateKey: 'key-a' },
        hostKey: { kind: 'trust-on-first-use' },
      },
    },
  ];
  for (const o of others) await run(p, target('10.250.0.2', o));
  t.is(opened.length, 1 + others.length);
  await run(p, target());
  t.is(opened.length, 1 + others.length, 'the first identity still finds its own');
  p.close();
});

test('a kept connection gone before any command ran is replaced; the caller sees one success', async (t) => {
  const { p, opened, seen } = pool();
  await run(p, target());
  opened[0]!.lost = true; // e.g. the host rebooted while it was kept, not noticed yet
  t.is(await run(p, target(), 'again'), 'again');
  t.is(opened.length, 2);
  t.deepEqual(seen, [true, true]);
  p.close();
});

test('a kept connection lost after a command ran is the work error: never run twice', async (t) => {
  const { p, opened } = pool();
  await run(p, target());
  let calls = 0;
  const err = await t.throwsAsync(
    p.withHost(target(), async (c) => {
      calls++;
      await c.exec('step 1');
      (c as Conn).lost = true;
      await c.exec('step 2');
    }),
    { instanceOf: HostUnreachable },
  );
  t.regex(err?.message ?? '', /connection closed/);
  t.is(calls, 1);
  t.is(opened.length, 1);
  t.is(p.kept, 0, 'a lost connection is not kept');
});

test('a command that fails leaves a healthy connection kept', async (t) => {
  const { p, opened } = pool();
  await t.throwsAsync(p.withHost(target(), async () => Promise.reject(new Error('exit 1'))));
  await run(p, target());
  t.is(opened.length, 1);
  p.close();
});

test('kept connections count within maxConnections: the oldest kept one gives way', async (t) => {
  const { p, open } = pool({ maxConnections: 2 });
  for (const h of ['10.250.0.2', '10.250.0.3', '10.250.0.4', '10.250.0.5']) {
    await run(p, target(h));
    t.true(open() <= 2, `${open()} open after ${h}`);
  }
  // Two at once while two are kept: still at most two open.
  const gate = Promise.withResolvers<void>();
  const busy = [6, 7].map((i) => p.withHost(target(`10.250.0.${i}`), () => gate.promise));
  await new Promise((r) => setTimeout(r, 10));
  t.true(open() <= 2, `${open()} open with two busy`);
  gate.resolve();
  await Promise.all(busy);
  p.close();
  t.is(open(), 0);
});

test('a kept connection closes after keepIdleMs unused, and is not used past keepMaxLifeMs', async (t) => {
  const idle = pool({ keepIdleMs: 30 });
  await run(idle.p, target());
  await new Promise((r) => setTimeout(r, 80));
  t.true(idle.opened[0]!.closed);
  t.is(idle.p.kept, 0);

  const life = pool({ keepMaxLifeMs: 30 });
  await run(life.p, target());
  await new Promise((r) => setTimeout(r, 50));
  await run(life.p, target());
  t.is(life.opened.length, 2);
  t.true(life.opened[0]!.closed);
  life.p.close();
});

test('keepIdleMs 0: every connection closes after its work (the old way)', async (t) => {
  const { p, opened } = pool({ keepIdleMs: 0 });
  await run(p, target());
  await run(p, target());
  t.is(opened.length, 2);
  t.true(opened.every((c) => c.closed));
});
