// Every kind CAPBM serves, with what its CRD needs besides the schema: names, printer columns
// (what an operator wants from `kubectl get`), and the CAPI contract labels.
import { GROUP, VERSION } from './common.ts';
import { hostSpec, hostStatus } from './host.ts';
import {
  clusterSpec,
  clusterStatus,
  clusterTemplateSpec,
  machineSpec,
  machineStatus,
  machineTemplateSpec,
  machineTemplateStatus,
} from './machine.ts';
import { poolSpec, poolStatus } from './pool.ts';
import { object, type JSONSchema, type Schema } from './schema.ts';

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'date' | 'boolean';
  jsonPath: string;
  description?: string;
  priority?: number;
}

export interface Kind {
  kind: string;
  plural: string;
  shortNames: string[];
  description: string;
  spec: Schema<unknown>;
  status?: Schema<unknown>;
  columns: PrinterColumn[];
  /** clusterctl move's CRD labels (docs/clusterctl.md#move): what goes along when a namespace moves. */
  move?: 'move' | 'move-hierarchy';
}

const age: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };
const clusterCol: PrinterColumn = {
  name: 'Cluster',
  type: 'string',
  jsonPath: ".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']",
  description: 'Cluster to which this object belongs',
};

export const kinds: Kind[] = [
  {
    kind: 'BareMetalCluster',
    plural: 'baremetalclusters',
    shortNames: ['bmc'],
    description: 'The infrastructure of a Cluster API cluster made of bare-metal hosts reached over SSH.',
    spec: clusterSpec,
    status: clusterStatus,
    columns: [
      clusterCol,
      { name: 'Endpoint', type: 'string', jsonPath: '.spec.controlPlaneEndpoint.host' },
      { name: 'Provisioned', type: 'boolean', jsonPath: '.status.initialization.provisioned' },
      age,
    ],
  },
  {
    kind: 'BareMetalClusterTemplate',
    plural: 'baremetalclustertemplates',
    shortNames: ['bmct'],
    description: 'A BareMetalCluster template, for ClusterClass.',
    spec: clusterTemplateSpec,
    columns: [age],
  },
  {
    kind: 'BareMetalMachine',
    plural: 'baremetalmachines',
    shortNames: ['bmm'],
    description: 'A Cluster API machine on a bare-metal host claimed from a pool.',
    spec: machineSpec,
    status: machineStatus,
    columns: [
      clusterCol,
      { name: 'Host', type: 'string', jsonPath: '.status.hostRef.name' },
      { name: 'ProviderID', type: 'string', jsonPath: '.spec.providerID' },
      { name: 'Ready', type: 'string', jsonPath: ".status.conditions[?(@.type=='Ready')].status" },
      { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
      age,
    ],
  },
  {
    kind: 'BareMetalMachineTemplate',
    plural: 'baremetalmachinetemplates',
    shortNames: ['bmmt'],
    description: 'A BareMetalMachine template, for MachineDeployments and control planes.',
    spec: machineTemplateSpec,
    status: machineTemplateStatus,
    columns: [age],
  },
  {
    kind: 'BareMetalHostPool',
    plural: 'baremetalhostpools',
    shortNames: ['bmpool'],
    description: 'Hosts a team owns: addresses, the SSH key that reaches them, and how their host keys are checked.',
    // A pool moves with its namespace, and with it everything it owns (its hosts).
    move: 'move-hierarchy',
    spec: poolSpec,
    status: poolStatus,
    columns: [
      { name: 'Total', type: 'integer', jsonPath: '.status.total' },
      { name: 'Available', type: 'integer', jsonPath: '.status.available' },
      { name: 'Claimed', type: 'integer', jsonPath: '.status.claimed' },
      { name: 'Quarantined', type: 'integer', jsonPath: '.status.quarantined', priority: 1 },
      age,
    ],
  },
  {
    kind: 'BareMetalHost',
    plural: 'baremetalhosts',
    shortNames: ['bmh'],
    description: 'One address of a pool, materialized by the pool controller.',
    // Every host moves with its namespace, even one whose pool owner reference is missing.
    move: 'move',
    spec: hostSpec,
    status: hostStatus,
    columns: [
      { name: 'Address', type: 'string', jsonPath: '.spec.address' },
      { name: 'Pool', type: 'string', jsonPath: '.spec.poolRef.name' },
      { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
      { name: 'Consumer', type: 'string', jsonPath: '.spec.consumerRef.name' },
      age,
    ],
  },
];

/** The contract labels CAPI resolves our kinds' versions by (cluster-api util/contract). */
export const contractLabels = {
  'cluster.x-k8s.io/v1beta1': VERSION,
  'cluster.x-k8s.io/v1beta2': VERSION,
  'cluster.x-k8s.io/provider': 'infrastructure-capbm',
};

export function crd(k: Kind): JSONSchema {
  const top = object(
    { spec: k.spec, ...(k.status ? { status: k.status } : {}) },
    { description: k.description },
  ).openAPI();
  const props = top.properties as Record<string, JSONSchema>;
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${k.plural}.${GROUP}`,
      labels: { ...contractLabels, ...(k.move ? { [`clusterctl.cluster.x-k8s.io/${k.move}`]: '' } : {}) },
    },
    spec: {
      group: GROUP,
      names: {
        kind: k.kind,
        listKind: `${k.kind}List`,
        plural: k.plural,
        singular: k.kind.toLowerCase(),
        shortNames: k.shortNames,
        categories: ['cluster-api'],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          ...(k.status ? { subresources: { status: {} } } : {}),
          additionalPrinterColumns: k.columns,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: k.description,
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                ...props,
              },
            },
          },
        },
      ],
    },
  };
}
