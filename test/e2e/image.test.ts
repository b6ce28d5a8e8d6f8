// The manager image users deploy, installed the way users install it, run against the lab:
// manifests/manager/Dockerfile built by hack/image with podman (no daemon, no registry: a local
// Debian + Node.js base); `clusterctl init --infrastructure capbm` from hack/release's repository
// (CAPBM_IMAGE set to that image) into the lab's management plane; the Deployment init made, run
// as a kubelet would (its image, args, env and ServiceAccount token; `podman run --network host`
// with its security settings) as the lab's only provider. It provisions a one-machine cluster from
// cluster-template.yaml on a lab host, and `clusterctl describe cluster` shows it. The build is
// cached by content (hack/image): a cold build takes minutes, a warm one seconds.
import test from 'ava';
import { API_VERSION } from '../../provider/api/common.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import { raw } from '../../provider/kube/raw.ts';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  clusterctl,
  installCertManagerCrds,
  release,
  standInForCapiPods,
  writeClusterctlConfig,
} from '../harness/clusterctl.ts';
import { applyClusterTemplate, createPool, startEnv, waitForRunning, type Env } from '../harness/env.ts';
import {
  buildImage,
  containerCommand,
  deploymentReplica,
  hackImage,
  podman,
  podmanUnavailable,
  removeContainers,
} from '../harness/image.ts';
import { repoRoot } from '../harness/paths.ts';
import { startProcess, tail, type ManagedProcess } from '../harness/process.ts';

const ns = 'e2e-image';
const cluster = 'img';
const unavailable = podmanUnavailable();

if (unavailable) {
  test.skip(`the manager image: skipped, podman cannot run containers here (${unavailable})`, () => {});
} else {
  let env: Env | undefined;
  let image = '';
  let provider: ManagedProcess | undefined;

  test.before(async () => {
    await removeContainers('stale');
    env = await startEnv({ hosts: 1 });
    await createPool(env, ns, 'pool', env.hosts);
  });
  test.after.always(async () => {
    await provider?.stop(10_000);
    await removeContainers('mine').catch(() => {});
    await env?.stop();
  });

  test.serial('hack/image builds manifests/manager/Dockerfile; the image runs as the Dockerfile says', async (t) => {
    t.timeout(30 * 60_000);
    const built = await buildImage();
    t.log(built.output.split('\n').slice(-3).join('\n'));
    image = built.name;
    t.regex(image, /^localhost\/capbm-manager:[0-9a-f]{12}$/);
    const config = JSON.parse(await podman(['image', 'inspect', '--format', '{{json .Config}}', image])) as {
      User?: string;
      Entrypoint?: string[];
    };
    t.is(config.User, '65532:65532');
    t.deepEqual(config.Entrypoint, ['node', 'dist/provider/main.js']);
    // --help answers without a cluster: the entry point and its modules load in the image.
    t.regex(await hackImage(['run', '--rm', '--network=none', image, '--help']), /--kubeconfig/);
    // ssh2's native crypto binding was built in the image and loads (docs/scale.md: CPU per packet).
    const binding = "process.stdout.write(String(require('ssh2/lib/protocol/crypto.js').bindingAvailable))";
    t.regex(await hackImage(['run', '--rm', '--network=none', '--entrypoint', 'node', image, '-e', binding]), /true/);
  });

  test.serial(
    "clusterctl init installs CAPBM on the lab's management plane; its Deployment, run from the image, provisions a cluster; clusterctl describe shows it",
    async (t) => {
      t.timeout(20 * 60_000);
      if (!env || !image) return t.fail('no environment or image (the step before failed)');
      mkdirSync(join(repoRoot, '.cache', 'tmp'), { recursive: true });
      const dir = mkdtempSync(join(repoRoot, '.cache', 'tmp', 'image-clusterctl-'));
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      const config = writeClusterctlConfig(join(dir, 'config'), await release(join(dir, 'repository')));
      await installCertManagerCrds(env.cp.kc);
      const init = await clusterctl(['init', '--infrastructure', 'capbm', '--kubeconfig', env.cp.kubeconfigPath], {
        config,
        env: { CAPBM_IMAGE: image },
      });
      t.is(init.exitCode, 0, `clusterctl init: exit ${init.exitCode}\n${init.stderr}`);
      t.log(
        `clusterctl init; then, for CAPI's managers the harness runs: ${(await standInForCapiPods(env.cp.kc)).length} webhook objects removed`,
      );
      // The Deployment init installed, run as a kubelet would: its image (CAPBM_IMAGE), args, env
      // and ServiceAccount.
      const replica = await deploymentReplica(env.cp, 'capbm-system', 'capbm-manager');
      t.is(replica.image, image);
      t.is(replica.serviceAccount, 'capbm-manager');
      provider = startProcess({
        name: 'capbm-image',
        ...containerCommand({
          image: replica.image,
          name: `capbm-image-${process.pid}-0`,
          kubeconfig: replica.kubeconfig,
          args: replica.args,
          env: replica.env,
        }),
        logFile: join(env.cp.dir, 'capbm-image.log'),
      });
      await applyClusterTemplate(env, { namespace: ns, name: cluster, pool: 'pool', controlPlane: 1, workers: 0 });
      try {
        const [m] = await waitForRunning(env, ns, cluster, 1, 12 * 60_000);
        t.log(`Machine ${m!.name} Running, providerID ${m!.providerID ?? '(none)'}`);
        t.truthy(m!.providerID?.startsWith(`capbm://${ns}/`), 'the provider set the providerID');
      } catch (err) {
        t.log(`provider container log (tail):\n${tail(provider.logFile, 30)}`);
        throw err;
      }
      t.true(provider.running(), 'the container still runs');
      // The one provider of this lab is the container, from the image built above.
      const running = await podman(['ps', '--filter', `name=capbm-image-${process.pid}-`, '--format', '{{.Image}}']);
      t.is(running, image);
      const hosts = await raw<{ items: BareMetalHost[] }>(
        env.cp.kc,
        'GET',
        `/apis/${API_VERSION}/namespaces/${ns}/baremetalhosts`,
      );
      t.is(hosts.items.length, 1);
      t.is(hosts.items[0]!.status?.phase, 'Provisioned');
      const describe = await clusterctl(
        ['describe', 'cluster', cluster, '-n', ns, '--kubeconfig', env.cp.kubeconfigPath, '--show-conditions', 'all'],
        { config },
      );
      t.is(describe.exitCode, 0, describe.stderr);
      t.log(describe.stdout);
      // What CAPBM reports, as clusterctl shows it: the BareMetalCluster Ready with its endpoint, the
      // Machine's infrastructure ready (the rest waits for a pod network this test does not install).
      t.regex(describe.stdout, new RegExp(`^\\s*Cluster ${ns}/${cluster} `, 'm'));
      t.regex(
        describe.stdout,
        new RegExp(`BareMetalCluster ${ns}/${cluster}\\s*\\n(.*\\n){0,3}.*ControlPlaneEndpointSet\\s+True`),
      );
      t.regex(describe.stdout, new RegExp(`Machine ${ns}/${cluster}-control-plane-\\w+, v`));
      t.regex(describe.stdout, /InfrastructureReady\s+True\s+InfoReported/);
    },
  );
}
