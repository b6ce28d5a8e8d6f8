// A run's work over an SSH stand-in: started on one connection, then one connection per check and
// none in between; a host that stops answering fails the run after 3 checks in a row, a host that
// refuses the key at once; the end is finished on the connection of the check that saw it.
import test from 'ava';
import { render } from '../../../cloud-init/index.ts';
import { createLogger } from '../../../common/log.ts';
import { bootstrapWork } from '../../../provider/controllers/bootstrap-follow.ts';
import { BootstrapRuns, type Run } from '../../../provider/controllers/bootstrap-runs.ts';
import type { Step } from '../../../provider/controllers/machine-steps.ts';
import { bootstrapMetaData } from '../../../provider/controllers/metadata.ts';
import { AuthFailed, HostUnreachable, type SshRunner, type SshSession } from '../../../provider/ssh/index.ts';
import { workerData } from '../../harness/machine-world.ts';

const r = render(workerData, {
  metaData: { ...bootstrapMetaData({ namespace: 'ns', machineName: 'm', hostName: 'h', address: '192.0.2.9' }) },
  format: 'cloud-config',
});
const ctx = { host: '192.0.2.9', port: 22, user: 'root' };

/**
 * A host whose checks answer as `checks` says, one call after another, and whose start answers
 * `start`; every connection counted.
 */
function host(checks: Array<'running' | 'done' | Error>, start: 'started' | 'attached' | 'ended' = 'started') {
  const seen = { connections: 0, open: 0, most: 0, starting: 0, mostStarting: 0, commands: [] as string[] };
  const log = Buffer.from('CAPBM-STEP runcmd.0 start\nCAPBM-STEP runcmd.0 done\nCAPBM-RESULT ok\n');
  const session = {
    exec(command: string) {
      seen.commands.push(command.includes('CAPBM-CHECK') ? 'check' : command.split('\n')[0]!.slice(0, 20));
      if (command.startsWith('mkdir -p')) seen.mostStarting = Math.max(seen.mostStarting, ++seen.starting);
      let stdout = '';
      if (command.includes('CAPBM-CHECK')) {
        const next = checks.shift() ?? 'done';
        if (next instanceof Error) return Promise.reject(next);
        const o = Number(/^o=(\d+)$/m.exec(command)?.[1]);
        const end = next === 'done' ? 'rc=0 alive=no sentinel=yes' : 'rc=none alive=yes sentinel=no';
        stdout = `CAPBM-CHECK ${end} size=${log.length}\n${log.subarray(o).toString('base64')}\n`;
      } else if (command.includes('CAPBM-RUN')) {
        stdout = `CAPBM-RUN ${start}\n`;
        seen.starting--;
      }
      return new Promise((resolve) => setImmediate(() => resolve({ exitCode: 0, stdout, stderr: '' })));
    },
    upload: () => Promise.resolve(),
    close: () => {},
  } as unknown as SshSession;
  const ssh: SshRunner = {
    async withHost<T>(_t: unknown, fn: (c: SshSession) => Promise<T>): Promise<T> {
      seen.connections++;
      seen.most = Math.max(seen.most, ++seen.open);
      try {
        return await fn(session);
      } finally {
        seen.open--;
      }
    },
  };
  return { ssh, seen };
}

async function follow(ssh: SshRunner, runs = newRuns(), uid = 'u'): Promise<Run> {
  const s = {
    d: { ssh },
    m: { metadata: { name: 'm', namespace: 'ns', uid } },
    host: { metadata: { name: 'h' } },
    key: 'ns/m',
    signal: new AbortController().signal,
  } as unknown as Step;
  const target = {
    host: ctx.host,
    user: 'root',
    credentials: { privateKey: '' },
    hostKey: { kind: 'pinned' as const, fingerprints: [] },
  };
  runs.start(uid, `ns/${uid}`, s.signal, bootstrapWork(s, r, target));
  for (let i = 0; i < 500 && runs.get(uid)?.state === 'running'; i++) await new Promise((x) => setTimeout(x, 5));
  return runs.get(uid)!;
}

function newRuns(concurrency?: number): BootstrapRuns {
  return new BootstrapRuns({
    wake: () => {},
    log: createLogger({ level: 'error' }),
    checks: { firstMs: 1, maxMs: 5, concurrency },
  });
}

test('started on one connection, checked on one each, none held between; finished on the last', async (t) => {
  const { ssh, seen } = host(['running', 'running', new HostUnreachable(ctx, 'ETIMEDOUT'), 'running', 'done']);
  const run = await follow(ssh);
  t.is(run.state, 'finished');
  if (run.state === 'finished') t.like(run.result.bootstrap, { started: true, exitCode: 0, sentinel: true });
  t.is(seen.connections, 1 + 5, 'the start, then one per check (one failed check forgiven)');
  t.is(seen.most, 1);
  t.deepEqual(seen.commands.slice(-2), ['check', "rm -f '/var/lib/capb"], "scrubbed on the last check's connection");
});

test('a host that fails 3 checks in a row fails the run with the SSH error; a refused key at once', async (t) => {
  const down = () => new HostUnreachable(ctx, 'ECONNREFUSED');
  const gone = await follow(host(['running', down(), down(), down(), 'done']).ssh);
  t.is(gone.state, 'failed');
  if (gone.state === 'failed') t.true(gone.error instanceof HostUnreachable);
  const refused = host([new AuthFailed(ctx), 'done']);
  const auth = await follow(refused.ssh);
  t.is(auth.state, 'failed');
  if (auth.state === 'failed') t.true(auth.error instanceof AuthFailed);
  t.is(refused.seen.connections, 2, 'not tried again');
});

test('a run found going is checked on the start connection at once; one found ended is finished there', async (t) => {
  const ended = host(['done'], 'ended');
  const run = await follow(ended.ssh);
  t.is(run.state, 'finished');
  if (run.state === 'finished') t.like(run.result.bootstrap, { started: false, exitCode: 0, sentinel: true });
  t.is(ended.seen.connections, 1, 'attached, checked and scrubbed on one connection');
  t.deepEqual(ended.seen.commands.slice(-2), ['check', "rm -f '/var/lib/capb"]);
  const going = host(['running', 'done'], 'attached');
  t.is((await follow(going.ssh)).state, 'finished');
  t.is(going.seen.connections, 2, 'attached and checked on one, then one check that saw the end');
});

test('starts wait for a slot with the checks: a new leader attaching to many runs opens no more', async (t) => {
  const runs = newRuns(2);
  const many = host([], 'attached');
  const all = await Promise.all(Array.from({ length: 6 }, (_, i) => follow(many.ssh, runs, `u${i}`)));
  t.true(all.every((x) => x.state === 'finished'));
  t.is(many.seen.mostStarting, 2, 'at most 2 starts at once (the bound)');
});
