// The agent's start and stop shell on a host without systemd (as lab hosts are), run for real in
// a private mount and PID namespace with /opt, /run, /etc and /var/log overlaid: the supervisor
// starts detached with its pidfile, a second start replaces it (no duplicate), the agent comes
// back when killed, and the removal leaves no process and no file. Needs root and unshare.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildAgentBundle } from '../../agent/build.ts';
import { hostPaths, removeScript, startScript, supervisorText } from '../../common/agent-host.ts';
import { issueAgentCertificate, loadOrCreateAgentCa } from '../../provider/health/pki.ts';

const canRun = process.getuid?.() === 0 && spawnSync('unshare', ['--mount', '--pid', '--fork', 'true']).status === 0;

test('start, restart, self-heal and removal without systemd', async (t) => {
  if (!canRun) return t.pass('needs root and unshare (mount and PID namespaces)');
  const dir = mkdtempSync(join(tmpdir(), 'capbm-agent-svc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bundle = await buildAgentBundle();
  for (const d of ['etc-up', 'etc-work', 'stage']) mkdirSync(join(dir, d));
  const w = (name: string, text: string) => writeFileSync(join(dir, 'stage', name), text);
  w('supervisor', supervisorText);
  w('start.sh', startScript());
  w('remove.sh', removeScript());
  // The agent has no provider to reach: it runs and retries, which is all this test needs.
  const { ca } = await loadOrCreateAgentCa(undefined);
  const id = await issueAgentCertificate(ca, { host: 'ns/h', hostUid: 'u1', machineUid: 'u2' });
  w('agent.crt', id.certPem);
  w('agent.key', id.keyPem);
  w('ca.crt', ca.certPem);
  w('agent.json', JSON.stringify({ host: 'ns/h', reportUrl: 'https://127.0.0.1:9', intervalSeconds: 60 }));
  const count = `n=0; for p in /proc/[0-9]*; do [ "$(tr '\\0' '\\n' < $p/cmdline 2>/dev/null | head -n 1)" = ${hostPaths.runtime} ] && n=$((n+1)); done; echo $n`;
  const driver = `set -eu
mount -t tmpfs tmpfs /opt && mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/log
mount -t overlay overlay -o lowerdir=/etc,upperdir=${dir}/etc-up,workdir=${dir}/etc-work /etc
mkdir -p ${hostPaths.dir} ${hostPaths.pkiDir}
cp ${process.execPath} ${hostPaths.runtime}
cp ${bundle.path} ${hostPaths.bundle}
cp ${dir}/stage/supervisor ${hostPaths.supervisor}
cp ${dir}/stage/agent.json ${hostPaths.config}
cp ${dir}/stage/agent.crt ${hostPaths.cert}; cp ${dir}/stage/agent.key ${hostPaths.key}; cp ${dir}/stage/ca.crt ${hostPaths.ca}
echo "start1: $(sh ${dir}/stage/start.sh | tail -n 1)"
sleep 1
echo "agents1: $(${count})"
pg1=$(cat ${hostPaths.pidfile})
sh ${dir}/stage/start.sh >/dev/null
sleep 1
echo "agents2: $(${count})"
[ "$(cat ${hostPaths.pidfile})" != "$pg1" ] && echo "replaced: yes"
kill -0 "$pg1" 2>/dev/null && echo "old supervisor alive" || true
for p in /proc/[0-9]*; do [ "$(tr '\\0' '\\n' < $p/cmdline 2>/dev/null | head -n 1)" = ${hostPaths.runtime} ] && kill -KILL \${p#/proc/}; done
sleep 6
echo "agents after kill: $(${count})"
head -c 300 ${hostPaths.log}; echo
sh ${dir}/stage/remove.sh
echo "agents after remove: $(${count})"
ls ${hostPaths.dir}
[ -e ${hostPaths.configDir} ] && echo "config left" || true
[ -e ${hostPaths.pidfile} ] && echo "pidfile left" || true
true`;
  const out = execFileSync('unshare', ['--mount', '--pid', '--fork', '--mount-proc', 'sh', '-c', driver], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.log(out);
  t.regex(out, /^start1: capbm-agent=pid:\d+$/m);
  t.regex(out, /^agents1: 1$/m);
  t.regex(out, /^agents2: 1$/m);
  t.regex(out, /^replaced: yes$/m);
  t.notRegex(out, /old supervisor alive/);
  t.regex(out, /^agents after kill: 1$/m);
  t.regex(out, /^agents after remove: 0$/m);
  // Only the runtime stays, for the next install on this host.
  t.regex(out, /^node$/m);
  t.notRegex(out, /capbm-agent\.mjs|left/);
});
