// What a reset guarantees, on a real host (a lab host: OpenSSH, Debian userland, real useradd):
// the accounts a bootstrap made or changed are undone exactly (a user it created, the sudo rule it
// added, the authorized key it gave root), a bootstrap still running is stopped first, and a host
// that was not reset is refused by the preflight.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { render } from '../../cloud-init/index.ts';
import { runBootstrap, runPreflight, runReset } from '../../provider/controllers/host-ops.ts';
import { connect, type SshConnection } from '../../provider/ssh/index.ts';
import { hostExec, startHost, stopStartedHosts, type LabHost } from '../harness/lab.ts';

const key = ssh2.utils.generateKeyPairSync('ed25519');
const tenantKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFormerTenantKeyNotARealOne000000000000000000 admin@old-cluster';
let h: LabHost;
let conn: SshConnection;

test.before(async () => {
  h = await startHost({ authorizedKeys: [key.public] });
  conn = await connect({
    host: h.address,
    user: 'root',
    credentials: { privateKey: key.private },
    hostKey: { kind: 'pinned', fingerprints: [h.hostKeyFingerprint] },
  });
});
test.after.always(async () => {
  conn?.close();
  await stopStartedHosts();
});

const data = `#cloud-config
users:
  - name: clusteradmin
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    ssh_authorized_keys: ["${tenantKey}"]
  - name: root
    ssh_authorized_keys: ["${tenantKey}"]
write_files:
  - path: /etc/tenant/token
    content: a secret of the last cluster
  - path: /run/cluster-api/placeholder
    content: as CABPK writes it, to make the folder (a server's /run starts empty)
runcmd:
  - touch /run/cluster-api/bootstrap-success.complete
`;

const meta = {
  instance_id: 'm1',
  local_hostname: 'm1',
  hostname: 'm1',
  provider_id: 'capbm://t/h',
  local_ipv4: '10.250.9.9',
};

test.serial('a reset undoes the accounts a bootstrap changed; until then the preflight refuses the host', async (t) => {
  const r = render(data, { metaData: meta });
  const out = await runBootstrap(conn, { instance: 'm1', script: r.script, files: r.files });
  t.true(out.sentinel);
  t.is((await hostExec(h, 'getent passwd clusteradmin | cut -d: -f1')).stdout.trim(), 'clusteradmin');
  t.true(readFileSync(join(h.root, 'root/.ssh/authorized_keys'), 'utf8').includes(tenantKey));

  // Not reset: the next claim's preflight sees it.
  const pre = await runPreflight(conn);
  t.true(pre.problems.some((p) => p.reason === 'HostDirty' && p.message.includes('/var/lib/capbm/ledger')));

  const reset = await runReset(conn);
  t.deepEqual(reset.leftovers, []);
  t.true(reset.clean);
  t.is((await hostExec(h, 'getent passwd clusteradmin || echo gone')).stdout.trim(), 'gone');
  t.false(readFileSync(join(h.root, 'root/.ssh/authorized_keys'), 'utf8').includes(tenantKey));
  t.true(
    readFileSync(join(h.root, 'root/.ssh/authorized_keys'), 'utf8').includes(key.public.trim()),
    'our own key stays',
  );
  t.is(
    (await hostExec(h, 'grep -c clusteradmin /etc/sudoers.d/90-cloud-init-users 2>/dev/null || true')).stdout.trim(),
    '',
  );
  t.is((await hostExec(h, 'test -e /etc/tenant/token && echo there || echo gone')).stdout.trim(), 'gone');
  t.deepEqual((await runPreflight(conn)).problems, []);
  // root's password was locked by the bootstrap (lock_passwd defaults to true), and unlocked again:
  // its login works as before.
  t.notRegex((await hostExec(h, 'getent shadow root | cut -d: -f2')).stdout, /^!/);
});

test.serial('a reset stops a bootstrap that is still running before it cleans up', async (t) => {
  const slow = render(
    `#cloud-config\nruncmd:\n  - sleep 30\n  - mkdir -p /etc/kubernetes && touch /etc/kubernetes/kubelet.conf\n`,
    {
      metaData: { ...meta, instance_id: 'm2' },
    },
  );
  // Started detached and left running: its machine was deleted mid-way.
  const started = runBootstrap(conn, { instance: 'm2', script: slow.script, files: slow.files }).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 1500));
  const reset = await runReset(conn);
  t.true(reset.clean);
  await new Promise((r) => setTimeout(r, 500));
  t.is((await hostExec(h, 'pgrep -x sleep || echo none')).stdout.trim(), 'none');
  t.is((await hostExec(h, 'test -e /etc/kubernetes/kubelet.conf && echo there || echo gone')).stdout.trim(), 'gone');
  conn.close();
  await started;
  conn = await connect({
    host: h.address,
    user: 'root',
    credentials: { privateKey: key.private },
    hostKey: { kind: 'pinned', fingerprints: [h.hostKeyFingerprint] },
  });
});
