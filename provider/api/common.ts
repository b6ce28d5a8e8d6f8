// Shapes shared by several kinds: CAPI's contract types, conditions, references.
import { array, enumeration, int, map, object, string, time } from './schema.ts';

export const GROUP = 'infrastructure.cluster.x-k8s.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** The metadata fields the provider reads and writes. */
export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  finalizers?: string[];
  deletionTimestamp?: string;
}

/** One of our kinds, typed from its spec and status schemas. */
export interface Resource<K extends string, Spec, Status> {
  apiVersion: typeof API_VERSION;
  kind: K;
  metadata: ObjectMeta;
  spec: Spec;
  status?: Status;
}

/** metav1.Condition: the v1beta2 contract's conditions, a list keyed by type. */
export const condition = object(
  {
    type: string({ maxLength: 316 }),
    status: enumeration(['True', 'False', 'Unknown']),
    reason: string({ maxLength: 1024 }),
    message: string({ maxLength: 32768 }),
    lastTransitionTime: time(),
    observedGeneration: int({ minimum: 0 }),
  },
  { required: ['type', 'status', 'lastTransitionTime', 'reason'] },
);
export const conditions = array(condition, { listType: 'map', mapKeys: ['type'], maxItems: 32 });

/** CAPI v1beta1 Condition (kept under status.deprecated.v1beta1 during the contract transition). */
export const v1beta1Condition = object(
  {
    type: string(),
    status: enumeration(['True', 'False', 'Unknown']),
    severity: enumeration(['Error', 'Warning', 'Info', '']),
    reason: string(),
    message: string(),
    lastTransitionTime: time(),
  },
  { required: ['type', 'status', 'lastTransitionTime'] },
);
export const deprecated = object({ v1beta1: object({ conditions: array(v1beta1Condition, { maxItems: 32 }) }) });

export const apiEndpoint = object(
  {
    host: string({ maxLength: 512, description: 'Address (VIP, load balancer or host) of the Kubernetes API.' }),
    port: int({ minimum: 1, maximum: 65535 }),
  },
  { description: 'The Kubernetes API endpoint of the workload cluster.' },
);

/**
 * An object name (DNS-1123 subdomain, as Kubernetes requires of Secrets and our kinds). A name is
 * a path segment on the API server: anything else ("../other-namespace/...") is refused here,
 * and again in code (kube/kinds.ts seg).
 */
export const DNS1123_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
export const objectName = (description?: string) =>
  string({ minLength: 1, maxLength: 253, pattern: DNS1123_SUBDOMAIN, ...(description ? { description } : {}) });

export const localRef = object({ name: objectName() }, { required: ['name'] });

export const secretKeyRef = object(
  { name: objectName(), key: string({ maxLength: 253, pattern: '^[-._a-zA-Z0-9]+$' }) },
  { required: ['name'], description: 'A Secret in the same namespace.' },
);

/** A login name as useradd accepts it; it goes into sudoers and paths on the host. */
export const unixUser = (defaultUser: string) =>
  string({ minLength: 1, maxLength: 32, pattern: '^[a-z_][a-z0-9_-]*$', default: defaultUser });

export const machineAddress = object(
  {
    type: enumeration(['Hostname', 'ExternalIP', 'InternalIP', 'ExternalDNS', 'InternalDNS']),
    address: string({ maxLength: 256 }),
  },
  { required: ['type', 'address'] },
);

export const labelSelector = object({
  matchLabels: map(string({ maxLength: 63 }), { maxProperties: 32 }),
});

export const labels = map(string({ maxLength: 63 }), {
  maxProperties: 32,
  description: 'Labels stamped on every host of the pool.',
});
