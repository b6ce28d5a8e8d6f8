// Host preparation on lab hosts, for the tests of both bundle sources: an SSH connection as root
// (the host key pinned), and what preparation would leave on a host it must not have touched.
import { RECORD } from '../../provider/preparation/plan.ts';
import { connect, type SshConnection } from '../../provider/ssh/index.ts';
import { hostExec, type LabHost } from './lab.ts';

/** Runs fn over one SSH connection to the host as root, closed afterwards. */
export async function asRoot<T>(h: LabHost, privateKey: string, fn: (c: SshConnection) => Promise<T>): Promise<T> {
  const c = await connect({
    host: h.address,
    user: 'root',
    credentials: { privateKey },
    hostKey: { kind: 'pinned', fingerprints: [h.hostKeyFingerprint] },
    connectTimeoutMs: 15_000,
  });
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

/** The paths of a preparation (installed, being installed, or staged) found on the host; '' when none. */
export async function preparationLeftovers(h: LabHost): Promise<string> {
  const r = await hostExec(
    h,
    `for p in ${RECORD} /usr/bin/kubeadm /usr/bin/containerd /opt/cni/bin /etc/capbm/installing /var/lib/capbm/bundle; do [ -e $p ] && echo $p; done; true`,
  );
  return r.stdout.trim();
}
