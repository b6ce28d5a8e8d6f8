// The manager image users deploy, run against the lab: manifests/manager/Dockerfile built by
// hack/image with podman (no daemon, no registry: a local Debian + Node.js base), then run as the
// lab's only provider with `podman run --network host` under the provider's ServiceAccount and the
// Deployment's security settings. It provisions a one-machine cluster from cluster-template.yaml
// on a lab host. The build is cached by content (hack/image): a cold build takes minutes, a warm
// one seconds.
import test from 'ava';
import { API_VERSION } from '../../provider/api/common.ts';
import type { BareMetalHost } from '../../provider/api/host.ts';
import { raw } from '../../provider/kube/raw.ts';
import { applyClusterTemplate, createPool, startEnv, waitForRunning, type Env } from '../harness/env.ts';
import { buildImage, hackImage, podman, podmanUnavailable, removeContainers } from '../harness/image.ts';
import type { ManagedProcess } from '../harness/process.ts';
import { tail } from '../harness/process.ts';

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
  });

  test.serial('the provider from the image provisions a cluster on a lab host: its Machine Running', async (t) => {
    t.timeout(15 * 60_000);
    if (!env || !image) return t.fail('no environment or image (the step before failed)');
    provider = env.startProvider({ image, name: 'capbm-image' });
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
  });
}
