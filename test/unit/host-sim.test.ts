// The host simulator answers exactly what the provider sends: the provider's own host operations
// (provider/controllers/host-ops.ts, and SshConnection's upload script) run against a simulated
// host, without SSH in between: preflight, bootstrap (start, checks, attach, done), scrub, reset.
import test from 'ava';
import { buffer } from 'node:stream/consumers';
import { render } from '../../cloud-init/index.ts';
import { checkScript, startScript } from '../../provider/controllers/bootstrap-log.ts';
import { runBootstrap, runPreflight, runReset, scrubBootstrap } from '../../provider/controllers/host-ops.ts';
import { bootstrapMetaData } from '../../provider/controllers/metadata.ts';
import { SshConnection, type ExecOptions, type ExecResult, type SshSession } from '../../provider/ssh/index.ts';
import { answer, classify, newStats, simHost, stepIds, type SimHost, type SimOptions } from '../harness/host-sim.ts';
import { workerData } from '../harness/machine-world.ts';

function session(h: SimHost, o: SimOptions): SshSession {
  const exec = (command: string, eo: ExecOptions = {}): Promise<ExecResult> =>
    new Promise((resolve) => {
      const r = { stdout: '', stderr: '' };
      let partial = '';
      answer(
        h,
        command,
        async () => {
          const input = eo.stdin ?? '';
          return (typeof input === 'string' || Buffer.isBuffer(input) ? input : await buffer(input)).toString();
        },
        {
          out: (t) => {
            r.stdout += t;
            const lines = (partial + t).split('\n');
            partial = lines.pop() ?? '';
            for (const l of lines) eo.onLine?.(l, 'stdout');
          },
          err: (t) => (r.stderr += t),
          exit: (exitCode) => resolve({ exitCode, ...r }),
        },
        o,
      );
    });
  const s = {
    target: {
      host: h.address,
      user: 'root',
      credentials: { privateKey: '' },
      hostKey: { kind: 'pinned', fingerprints: [] },
    },
    hostKeyFingerprint: 'SHA256:sim',
    hostKeyFirstUse: false,
    exec,
    close: () => {},
  } as unknown as SshSession;
  // The upload script is SshConnection's own: it needs only exec.
  s.upload = (path: string, content: string | Buffer) => SshConnection.prototype.upload.call(s as never, path, content);
  return s;
}

const script = render(workerData, {
  metaData: {
    ...bootstrapMetaData({ namespace: 'fleet', machineName: 'c0-m0', hostName: 'h0', address: '10.250.192.1' }),
  },
  format: 'cloud-config',
});

test('the provider runs preflight, bootstrap and scrub on a simulated host; every command is known', async (t) => {
  const o: SimOptions = { bootstrapMs: 30, stats: newStats() };
  const h = simHost('10.250.192.1');
  const conn = session(h, o);
  const pre = await runPreflight(conn);
  t.deepEqual(pre.problems, []);
  const steps: string[] = [];
  const b = {
    instance: 'c0-m0',
    script: script.script,
    files: script.files,
    onStep: (id: string, e: string) => steps.push(`${id} ${e}`),
  };
  const out = await runBootstrap(conn, b, { everyMs: 5 });
  t.like(out, { started: true, exitCode: 0, sentinel: true });
  t.deepEqual(
    steps.filter((s) => s.endsWith(' start')),
    script.steps.map((s) => `${s.id} start`),
    'each rendered step reported',
  );
  await scrubBootstrap(conn, 'c0-m0');
  t.false(h.files.has('/var/lib/capbm/c0-m0/run/bootstrap.sh'));
  // Run again (a restarted manager): it attaches to the ended run, nothing runs twice.
  const again = await runBootstrap(conn, b, { everyMs: 5 });
  t.like(again, { started: false, exitCode: 0, sentinel: true });
  t.like(o.stats, { runsStarted: 1, runsAttached: 1, runsFoundEnded: 1, runsCompleted: 1, unknown: 0 });
  t.like(o.stats, { runsOnHostAgain: 0, stepsRepeated: 0 });
  const reset = await runReset(conn);
  t.true(reset.clean);
  t.false(h.sentinel);
  t.is(h.runs.size, 0);
});

test('a manager that attaches mid-run follows the same run to its end', async (t) => {
  const o: SimOptions = { bootstrapMs: 60, stats: newStats() };
  const h = simHost('10.250.192.2');
  const conn = session(h, o);
  const b = { instance: 'm', script: script.script, files: script.files };
  const first = runBootstrap(conn, b, { everyMs: 5 });
  await new Promise((r) => setTimeout(r, 20));
  const second = await runBootstrap(conn, b, { everyMs: 5 });
  t.like(second, { started: false, exitCode: 0, sentinel: true });
  t.like(await first, { started: true, exitCode: 0 });
  t.like(o.stats, { runsStarted: 1, runsFoundEnded: 0, runsOnHostAgain: 0, stepsRepeated: 0 });
});

test('a second run on a host whose first run is going is counted, and so are the steps it starts again', async (t) => {
  const o: SimOptions = { bootstrapMs: 2000, stats: newStats() };
  const h = simHost('10.250.192.4');
  const conn = session(h, o);
  for (const dir of ['/var/lib/capbm/a/run', '/var/lib/capbm/b/run']) {
    h.files.set(`${dir}/bootstrap.sh.new`, script.script);
    t.regex((await conn.exec(startScript(dir))).stdout, /CAPBM-RUN started/);
  }
  await new Promise((r) => setTimeout(r, 50));
  t.like(o.stats, { runsStarted: 2, runsOnHostAgain: 1 });
  t.true(o.stats.stepsRepeated >= 1, 'the first step, started by both runs');
  t.true((await runReset(conn)).clean); // stops both runs
});

test('commands the simulator does not know are refused and counted', async (t) => {
  const o: SimOptions = { bootstrapMs: 10, stats: newStats() };
  const r = await session(simHost('10.250.192.3'), o).exec('apt-get install -y kubelet');
  t.is(r.exitCode, 127);
  t.regex(r.stderr, /not simulated/);
  t.is(o.stats.unknown, 1);
  t.deepEqual(classify('capbm-sim-sleep 250'), { kind: 'sleep', ms: 250 });
  t.like(classify(checkScript('/var/lib/capbm/m/run', 12, 100)), { kind: 'check', offset: 12, max: 100 });
  t.like(classify(startScript('/var/lib/capbm/m/run')), { kind: 'start', dir: '/var/lib/capbm/m/run' });
  t.deepEqual(
    stepIds(script.script),
    script.steps.map((s) => s.id),
  );
});
