// Differential test: the same bootstrap data applied by CAPBM's script on one lab host and by
// Debian's real cloud-init (NoCloud seed) on another; the resulting files (content, mode, owner),
// accounts and command effects must match. Deliberate differences are normalized here, each named:
//   D1 sudoers: cloud-init adds a "# Created by cloud-init v. ... on <date>" header: comments ignored.
//   D2 ntp: cloud-init writes its full chrony template; only server/pool lines are compared.
//   D3 kubeadm: the real kubeadm fails the same way on both hosts (isolated: no registry, no
//      control-plane endpoint), and the files compared are the bootstrap's, not kubeadm's.
//   D4 the distribution's default user: cloud-init creates it (Debian: `debian`, with a sudo rule)
//      when `users` is absent or lists `default`; CAPBM never does: bare-metal hosts have their
//      own users. Its sudoers line is ignored.
import test from 'ava';
import { readdirSync, readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { render } from '../../cloud-init/index.ts';
import { hostExec, startHosts, stopStartedHosts, type LabHost } from '../harness/lab.ts';
import { repoRoot } from '../harness/paths.ts';

const meta = {
  instance_id: 'diff-0',
  local_hostname: 'diff-0',
  hostname: 'diff-0',
  local_ipv4: '10.250.9.9',
  provider_id: 'capbm://diff/host-0',
};
const corpus = ['cabpk', 'cloud-init', 'cloud-init-diff'].flatMap((d) =>
  readdirSync(join(repoRoot, 'test/fixtures', d))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => ({ name: `${d}/${f}`, data: readFileSync(join(repoRoot, 'test/fixtures', d, f), 'utf8') })),
);

test.after.always(async () => {
  await stopStartedHosts();
});

// A stub chronyd so cloud-init's ntp module picks chrony instead of installing a client with apt.
const stubs = { '/usr/sbin/chronyd': '#!/bin/sh\nexit 0\n' };

async function isolate(h: LabHost): Promise<void> {
  // No route beyond the lab bridge: nothing either side runs can leave this machine.
  await hostExec(h, 'ip route del default 2>/dev/null; true');
}

async function applyOurs(h: LabHost, data: string): Promise<void> {
  const r = render(data, { metaData: meta });
  writeFileSync(join(h.root, 'root/capbm.sh'), r.script);
  await hostExec(h, 'chmod +x /usr/sbin/chronyd; sh /root/capbm.sh > /root/capbm.log 2>&1; true');
}

async function applyCloudInit(h: LabHost, data: string): Promise<void> {
  const seed = join(h.root, 'var/lib/cloud/seed/nocloud');
  mkdirSync(seed, { recursive: true });
  writeFileSync(join(seed, 'user-data'), data);
  writeFileSync(
    join(seed, 'meta-data'),
    Object.entries(meta)
      .map(([k, v]) => `${k === 'instance_id' ? 'instance-id' : k === 'local_hostname' ? 'local-hostname' : k}: ${v}`)
      .join('\n') + '\n',
  );
  // In a PID namespace of its own: cloud-init reads /proc/1/environ, which sshd (the lab host's
  // PID 1) overwrites with its process title. Stages separated by ';': a failing module (locale,
  // without the locales package) must not stop the later stages, as it does not on a real boot.
  const stages =
    'cloud-init init --local; cloud-init init; cloud-init modules --mode=config; cloud-init modules --mode=final';
  const r = await hostExec(
    h,
    `chmod +x /usr/sbin/chronyd; unshare --mount --pid --fork --mount-proc sh -c '${stages}' > /root/cloud-init.log 2>&1; echo $?`,
  );
  if (!/^\d+$/.test(r.stdout.trim())) throw new Error(`cloud-init did not run: ${r.stderr}`);
}

function comparable(path: string, content: string): string {
  if (path.startsWith('/etc/sudoers.d/')) {
    const rules = content.split('\n').filter((l) => l.trim() && !l.startsWith('#') && !l.startsWith('debian ')); // D1, D4
    return rules.length ? rules.join('\n') : 'absent';
  }
  if (path.includes('chrony'))
    return content
      .split('\n')
      .filter((l) => /^(server|pool) /.test(l))
      .map((l) => l.split(' ').slice(0, 2).join(' '))
      .sort()
      .join('\n'); // D2
  return content;
}

async function snapshot(h: LabHost, paths: string[], users: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const p of paths) {
    const r = await hostExec(
      h,
      `[ -e '${p}' ] || { echo absent; exit 0; }; stat -c '%a %U:%G' '${p}'; base64 -w0 '${p}'`,
    );
    const [meta0, b64 = ''] = r.stdout.split('\n');
    const body = meta0 === 'absent' ? 'absent' : comparable(p, Buffer.from(b64, 'base64').toString('utf8'));
    out[p] = body === 'absent' ? 'absent' : `${meta0} ${body}`;
  }
  for (const u of users) {
    out[`user:${u}`] = (
      await hostExec(
        h,
        `getent passwd ${u} | cut -d: -f1,6,7; id -nG ${u} 2>/dev/null; getent shadow ${u} | cut -d: -f2 | cut -c1`,
      )
    ).stdout;
  }
  return out;
}

function interesting(data: string): { paths: string[]; users: string[] } {
  const r = render(data, { metaData: meta });
  const users = [...data.matchAll(/^\s*- name: ([a-z_][a-z0-9_-]*)$/gm)].map((m) => m[1]!);
  const homes = users.map((u) => `/home/${u}/.ssh/authorized_keys`);
  return {
    paths: [
      ...r.files,
      ...homes,
      '/etc/sudoers.d/90-cloud-init-users',
      '/etc/chrony/chrony.conf',
      '/root/runcmd-string',
      '/root/runcmd-list',
      '/root/order',
      '/run/capbm-pre',
      '/run/capbm-post',
      '/run/cluster-api/bootstrap-success.complete',
    ],
    users,
  };
}

for (const c of corpus) {
  test.serial(`CAPBM's script and real cloud-init leave the same result: ${c.name}`, async (t) => {
    const [ours, theirs] = await startHosts(2, { authorizedKeys: [], files: stubs });
    await Promise.all([isolate(ours!), isolate(theirs!)]);
    await applyOurs(ours!, c.data);
    await applyCloudInit(theirs!, c.data);
    const { paths, users } = interesting(c.data);
    const [a, b] = await Promise.all([snapshot(ours!, paths, users), snapshot(theirs!, paths, users)]);
    t.deepEqual(a, b, `CAPBM log:\n${readFileSync(join(ours!.root, 'root/capbm.log'), 'utf8').slice(-2000)}`);
    await stopStartedHosts();
  });
}
