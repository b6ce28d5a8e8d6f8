// BareMetalMachine(Template) and BareMetalCluster(Template): the CAPI infrastructure contract kinds.
import {
  type Resource,
  apiEndpoint,
  conditions,
  deprecated,
  labelSelector,
  localRef,
  machineAddress,
} from './common.ts';
import { array, bool, enumeration, int, map, object, string, type Infer } from './schema.ts';

export const healthCheck = object(
  {
    name: string({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' }),
    command: string({ minLength: 1, maxLength: 4096, description: 'Run by sh on the host; exit 0 means healthy.' }),
    intervalSeconds: int({ minimum: 5, maximum: 3600, default: 30 }),
    timeoutSeconds: int({ minimum: 1, maximum: 600, default: 10 }),
  },
  { required: ['name', 'command'] },
);

/** Host preparation (docs/hosts.md): make a stock host a node of the Machine's Kubernetes version. */
export const preparation = object(
  {
    bundle: object(
      {
        source: enumeration(['Provider', 'HTTP'] as const, {
          default: 'Provider',
          description:
            'Where the bundle comes from. Provider: the provider uploads it over SSH from its --bundle-dir (air-gapped; hosts download nothing). HTTP: each host downloads it from url (or a mirror), with curl or wget (connected sites).',
        }),
        name: string({
          pattern: '^[a-z0-9][a-z0-9.-]*$',
          maxLength: 128,
          description:
            "Source Provider: a bundle folder of --bundle-dir; default: the newest kubernetes-<the Machine's version>-b<n>.",
        }),
        sha256: string({
          pattern: '^[0-9a-f]{64}$',
          description:
            'Pins the bundle: the sha256 of its manifest.json (hack/bundle prints it). Required for source HTTP.',
        }),
        url: string({
          pattern: '^https?://[^\\s"\\\\]+$',
          maxLength: 2048,
          description:
            'Source HTTP: the base URL of a bundle folder as hack/bundle lays it out (<url>/manifest.json, <url>/files/<path>), served by any static web server.',
        }),
        mirrors: array(string({ pattern: '^https?://[^\\s"\\\\]+$', maxLength: 2048 }), {
          maxItems: 8,
          description: 'Source HTTP: further base URLs of the same bundle, tried in order when one fails.',
        }),
        proxy: string({
          pattern: '^https?://[^\\s"\\\\]+$',
          maxLength: 2048,
          description:
            "Source HTTP: an http proxy the hosts' downloads go through (http://[user:password@]host:port). Given to the download on its input, never on a command line; credentials are never shown in conditions.",
        }),
      },
      {
        rules: [
          {
            rule: "!has(self.sha256) || has(self.name) || (has(self.source) && self.source == 'HTTP')",
            message: 'bundle.sha256 pins one bundle: set bundle.name too',
          },
          {
            rule: "!has(self.source) || self.source != 'HTTP' || (has(self.url) && has(self.sha256))",
            message:
              'bundle.source HTTP needs bundle.url and bundle.sha256: the sha256 of the manifest.json served there (hack/bundle prints it) pins a bundle that comes from elsewhere',
          },
          {
            rule: "(has(self.source) && self.source == 'HTTP') || (!has(self.url) && !has(self.mirrors) && !has(self.proxy))",
            message: 'bundle.url, bundle.mirrors and bundle.proxy are for bundle.source: HTTP',
          },
          {
            rule: "!has(self.source) || self.source != 'HTTP' || !has(self.name)",
            message:
              "bundle.name names a folder of the provider's --bundle-dir (source Provider); for HTTP, bundle.url says where the bundle is",
          },
        ],
      },
    ),
    onVersionMismatch: enumeration(['Refuse', 'Replace'] as const, {
      default: 'Refuse',
      description:
        'A host CAPBM prepared for another Kubernetes version: Refuse it (the machine waits), or Replace what was installed. A host whose OS image has another version is always refused.',
    }),
    minFreeDiskMiB: int({
      minimum: 0,
      maximum: 1048576,
      default: 2048,
      description:
        'Free space left after the bundle is staged and installed; less is refused before anything is installed.',
    }),
  },
  { description: "Absent: hosts must already have a container runtime and Kubernetes of the Machine's version." },
);

const machineSpecProps = {
  providerID: string({ description: 'capbm://<namespace>/<host>; set once by the provider, never changed.' }),
  poolRef: localRef,
  hostSelector: labelSelector,
  healthChecks: array(healthCheck, { maxItems: 16, description: 'Extra checks the node agent runs.' }),
  preparation,
};

export const machineSpec = object(machineSpecProps, {
  rules: [
    {
      rule: '!has(oldSelf.providerID) || self.providerID == oldSelf.providerID',
      message: 'providerID is immutable once set',
    },
  ],
});

export const machineStatus = object({
  initialization: object({ provisioned: bool() }),
  ready: bool({ description: 'v1beta1 contract: the machine is provisioned.' }),
  addresses: array(machineAddress, { maxItems: 32 }),
  hostRef: localRef,
  phase: string({
    description: 'A human-readable phase: Pending, Claimed, Provisioning, Provisioned, Deleting, Failed.',
  }),
  conditions,
  deprecated,
});

export const machineTemplateSpec = object(
  {
    template: object(
      {
        spec: object({
          poolRef: localRef,
          hostSelector: labelSelector,
          healthChecks: machineSpecProps.healthChecks,
          preparation,
        }),
      },
      { required: ['spec'] },
    ),
  },
  { required: ['template'] },
);
export const machineTemplateStatus = object({
  capacity: map(string(), { description: 'cpu, memory: lets the autoscaler scale from zero.' }),
});

export const clusterSpec = object({
  controlPlaneEndpoint: apiEndpoint,
  failureDomains: array(object({ name: string({ minLength: 1 }), controlPlane: bool() }, { required: ['name'] }), {
    maxItems: 32,
  }),
});

export const clusterStatus = object({
  initialization: object({ provisioned: bool() }),
  ready: bool(),
  failureDomains: array(object({ name: string(), controlPlane: bool() }, { required: ['name'] })),
  conditions,
  deprecated,
});

export const clusterTemplateSpec = object(
  { template: object({ spec: clusterSpec }, { required: ['spec'] }) },
  { required: ['template'] },
);

export type MachineSpec = Infer<typeof machineSpec>;
export type Preparation = Infer<typeof preparation>;
export type MachineStatus = Infer<typeof machineStatus>;
export type ClusterSpec = Infer<typeof clusterSpec>;
export type ClusterStatus = Infer<typeof clusterStatus>;
export type BareMetalMachine = Resource<'BareMetalMachine', MachineSpec, MachineStatus>;
export type BareMetalCluster = Resource<'BareMetalCluster', ClusterSpec, ClusterStatus>;
