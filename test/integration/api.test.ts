// The generated CRDs against the real API server: they install, and malformed objects are
// rejected at apply time with a message a person understands.
import test from 'ava';
import { API_VERSION } from '../../provider/api/common.ts';
import { raw, ApiError } from '../../provider/kube/raw.ts';
import { installProviderCrds, startControlPlane, type ControlPlane } from '../harness/controlplane.ts';

let cp: ControlPlane;

test.before(async () => {
  cp = await startControlPlane();
  await installProviderCrds(cp.kc);
});
test.after.always(async () => {
  await cp?.stop();
});

const pool = (spec: Record<string, unknown>, name = 'p') => ({
  apiVersion: API_VERSION,
  kind: 'BareMetalHostPool',
  metadata: { name, namespace: 'default' },
  spec: {
    addresses: ['10.0.0.10-10.0.0.20'],
    ssh: { secretRef: { name: 'ssh' } },
    hostKeyPolicy: { type: 'TrustOnFirstUse' },
    ...spec,
  },
});

async function create(obj: Record<string, unknown>): Promise<unknown> {
  return raw(cp.kc, 'POST', `/apis/${API_VERSION}/namespaces/default/baremetalhostpools`, obj);
}

async function rejection(obj: Record<string, unknown>, post = create): Promise<string> {
  try {
    await post(obj);
  } catch (err) {
    if (err instanceof ApiError && err.code === 422) return err.message;
    throw err;
  }
  throw new Error('the API server accepted it');
}

test('every kind installs, with the CAPI contract labels and printer columns', async (t) => {
  const list = await raw<{ items: Array<{ metadata: { name: string; labels: Record<string, string> } }> }>(
    cp.kc,
    'GET',
    '/apis/apiextensions.k8s.io/v1/customresourcedefinitions?labelSelector=cluster.x-k8s.io%2Fprovider%3Dinfrastructure-capbm',
  );
  t.deepEqual(list.items.map((c) => c.metadata.name).sort(), [
    'baremetalclusters.infrastructure.cluster.x-k8s.io',
    'baremetalclustertemplates.infrastructure.cluster.x-k8s.io',
    'baremetalhostpools.infrastructure.cluster.x-k8s.io',
    'baremetalhosts.infrastructure.cluster.x-k8s.io',
    'baremetalmachines.infrastructure.cluster.x-k8s.io',
    'baremetalmachinetemplates.infrastructure.cluster.x-k8s.io',
  ]);
  for (const c of list.items)
    t.like(c.metadata.labels, { 'cluster.x-k8s.io/v1beta2': 'v1alpha1', 'cluster.x-k8s.io/v1beta1': 'v1alpha1' });
  t.truthy(
    await create(pool({ addresses: ['10.0.0.5', '10.0.1.0/28', '10.0.0.10-10.0.0.20', 'fd00::1-fd00::ff'] }, 'good')),
  );
});

const cases: Array<[string, Record<string, unknown>, RegExp]> = [
  ['a range whose start is above its end', { addresses: ['10.0.0.50-10.0.0.10'] }, /start at or below its end/],
  ['a malformed CIDR', { addresses: ['10.0.0.0/33'] }, /must be an IP address, a CIDR/],
  ['a range mixing IPv4 and IPv6', { addresses: ['10.0.0.1-fd00::1'] }, /must not mix IPv4 and IPv6/],
  ['an empty pool', { addresses: [] }, /addresses.*should have at least 1 items|must have at least 1 items/],
  ['a missing Secret reference', { ssh: { user: 'root' } }, /secretRef: Required value/],
  ['an unknown host-key policy', { hostKeyPolicy: { type: 'YOLO' } }, /Unsupported value: "YOLO"/],
  [
    'a negative port',
    { ssh: { secretRef: { name: 's' }, port: -1 } },
    /port.*should be greater than or equal to 1|must be greater than or equal to 1/,
  ],
  ['a pinned policy without fingerprints', { hostKeyPolicy: { type: 'Pinned' } }, /Pinned needs pinned fingerprints/],
];
for (const [what, spec, message] of cases) {
  test(`rejected with a clear message: ${what}`, async (t) => {
    t.regex(await rejection(pool(spec, `bad-${Math.random().toString(36).slice(2, 8)}`)), message);
  });
}

// Host preparation's bundle (docs/hosts.md): the HTTP source needs a URL and a pin; each source's fields stay its own.
const template = (bundle: Record<string, unknown>) => ({
  apiVersion: API_VERSION,
  kind: 'BareMetalMachineTemplate',
  metadata: { name: `t-${Math.random().toString(36).slice(2, 8)}`, namespace: 'default' },
  spec: { template: { spec: { poolRef: { name: 'p' }, preparation: { bundle } } } },
});
const createTemplate = (obj: Record<string, unknown>) =>
  raw(cp.kc, 'POST', `/apis/${API_VERSION}/namespaces/default/baremetalmachinetemplates`, obj);
const pin = 'a'.repeat(64);

test('a preparation bundle over HTTP with mirrors and a proxy is accepted', async (t) => {
  const http = { source: 'HTTP', url: 'http://10.0.0.1:8080/b', sha256: pin, mirrors: ['https://m.example/b'] };
  t.truthy(await createTemplate(template({ ...http, proxy: 'http://proxy.example:3128' })));
  t.truthy(await createTemplate(template({ name: 'kubernetes-v1.36.3-b1', sha256: pin })));
});

const bundleCases: Array<[string, Record<string, unknown>, RegExp]> = [
  ['HTTP without a pin', { source: 'HTTP', url: 'http://h/b' }, /HTTP needs bundle.url and bundle.sha256/],
  ['HTTP without a URL', { source: 'HTTP', sha256: pin }, /HTTP needs bundle.url and bundle.sha256/],
  [
    'a URL for the Provider source',
    { url: 'http://h/b' },
    /url, bundle.mirrors and bundle.proxy are for bundle.source: HTTP/,
  ],
  [
    'a bundle name for HTTP',
    { source: 'HTTP', url: 'http://h/b', sha256: pin, name: 'x' },
    /bundle.name names a folder/,
  ],
  [
    'a URL that is no http(s) URL',
    { source: 'HTTP', url: 'ftp://h/b', sha256: pin },
    /url: Invalid value|should match|must match/,
  ],
];
for (const [what, bundle, message] of bundleCases) {
  test(`rejected with a clear message: ${what}`, async (t) => {
    t.regex(await rejection(template(bundle), createTemplate), message);
  });
}
