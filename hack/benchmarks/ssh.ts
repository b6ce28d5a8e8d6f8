// hack/bench ssh [HOSTS] [OPS]: operations per second against lab hosts (real sshd in network
// namespaces on this machine), for CAPBM's transport and for OpenSSH's own client doing the same
// work, at concurrency 1, 10 and 50:
//   connect+exec: a new connection, handshake, auth, `true`, close, per operation
//   reused exec:  `true` on connections opened once (OpenSSH: ControlMaster multiplexing)
// Bounded: OPS operations per cell (default 200; 60 at concurrency 1), 60 s per cell at most.
import { execa } from 'execa';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { connect, type SshConnection, type Target } from '../../provider/ssh/index.ts';
import { startHosts, stopStartedHosts, type LabHost } from '../../test/harness/lab.ts';

const nHosts = Number(process.argv[2] ?? 10);
const ops = Number(process.argv[3] ?? 200);
const levels = [1, 10, 50];
const cellLimitMs = 60_000;

const key = ssh2.utils.generateKeyPairSync('ed25519');
const dir = mkdtempSync(join(tmpdir(), 'capbm-bench-ssh-'));
const keyFile = join(dir, 'id');
writeFileSync(keyFile, key.private, { mode: 0o600 });
// The hosts go away however the run ends (a failure included): no namespaces are left behind.
const hosts = await startHosts(nHosts, { authorizedKeys: [key.public] }).catch(async (err: unknown) => {
  await stopStartedHosts();
  throw err;
});
const rows: string[][] = [];
try {
  const knownHosts = join(dir, 'known_hosts');
  writeFileSync(knownHosts, hosts.map((h) => `${h.address} ${h.hostKeyPublic}`).join('\n') + '\n');

  const target = (h: LabHost): Target => ({
    host: h.address,
    user: 'root',
    credentials: { privateKey: key.private },
    hostKey: { kind: 'pinned', fingerprints: [h.hostKeyFingerprint] },
  });
  const sshArgs = (h: LabHost, extra: string[] = []) => [
    '-i',
    keyFile,
    '-o',
    `UserKnownHostsFile=${knownHosts}`,
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'BatchMode=yes',
    ...extra,
    `root@${h.address}`,
    'true',
  ];

  /** Runs `count` operations with at most `c` in flight; returns operations per second. */
  async function measure(c: number, count: number, op: (i: number) => Promise<unknown>): Promise<string> {
    let next = 0;
    let done = 0;
    const start = performance.now();
    const deadline = start + cellLimitMs;
    const worker = async () => {
      while (next < count && performance.now() < deadline) {
        const i = next++;
        await op(i);
        done++;
      }
    };
    await Promise.all(Array.from({ length: c }, worker));
    return (done / ((performance.now() - start) / 1000)).toFixed(1);
  }

  const hostOf = (i: number) => hosts[i % hosts.length]!;
  for (const c of levels) {
    const n = c === 1 ? Math.min(ops, 60) : ops;
    const capbmNew = await measure(c, n, async (i) => {
      const conn = await connect(target(hostOf(i)));
      await conn.exec('true');
      conn.close();
    });
    const opensshNew = await measure(c, n, (i) => execa('ssh', sshArgs(hostOf(i))));
    const conns: SshConnection[] = await Promise.all(hosts.map((h) => connect(target(h))));
    const capbmReuse = await measure(c, n, (i) => conns[i % conns.length]!.exec('true'));
    for (const x of conns) x.close();
    const mux = (_h: LabHost) => [
      '-o',
      'ControlMaster=auto',
      '-o',
      `ControlPath=${dir}/cm-%h`,
      '-o',
      'ControlPersist=60',
    ];
    await Promise.all(hosts.map((h) => execa('ssh', sshArgs(h, mux(h)))));
    const opensshReuse = await measure(c, n, (i) => execa('ssh', sshArgs(hostOf(i), mux(hostOf(i)))));
    await Promise.all(
      hosts.map((h) => execa('ssh', ['-o', `ControlPath=${dir}/cm-%h`, '-O', 'exit', h.address], { reject: false })),
    );
    const ratio = (a: string, b: string) => (Number(a) / Number(b)).toFixed(2);
    rows.push([
      String(c),
      capbmNew,
      opensshNew,
      ratio(capbmNew, opensshNew),
      capbmReuse,
      opensshReuse,
      ratio(capbmReuse, opensshReuse),
    ]);
  }
} finally {
  await stopStartedHosts();
}

const head = ['concurrency', 'capbm new/s', 'openssh new/s', 'ratio', 'capbm reused/s', 'openssh mux/s', 'ratio'];
const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const fmt = (r: string[]) => r.map((v, i) => v.padStart(width[i]!)).join('  ');
process.stdout.write(
  [
    `command: ${process.env.CAPBM_BENCH_COMMAND ?? `hack/bench ssh ${nHosts} ${ops}`}`,
    `${nHosts} lab hosts (OpenSSH sshd, ed25519, host keys pinned), operations per cell: ${ops} (60 at concurrency 1), op = exec of \`true\``,
    fmt(head),
    ...rows.map(fmt),
    '',
  ].join('\n'),
);
