// BareMetalHost: one address of a pool. The claim (consumerRef) lives in spec, so it survives a
// controller restart and `clusterctl move`; the phase in status is derived from it and from the
// provisioning steps.
import { type Resource, conditions, objectName } from './common.ts';
import { bool, enumeration, int, object, string, time, type Infer } from './schema.ts';

export const HOST_PHASES = [
  'Available',
  'Claimed',
  'Provisioning',
  'Provisioned',
  'Deprovisioning',
  'Quarantined',
] as const;
export type HostPhase = (typeof HOST_PHASES)[number];

export const consumerRef = object(
  {
    apiVersion: string(),
    kind: string({ minLength: 1 }),
    namespace: string({ minLength: 1 }),
    name: string({ minLength: 1 }),
    uid: string({ minLength: 1 }),
  },
  { required: ['kind', 'namespace', 'name', 'uid'], description: 'The machine holding this host.' },
);

export const hostSpec = object(
  {
    address: string({ minLength: 1, maxLength: 64 }),
    poolRef: object({ name: objectName() }, { required: ['name'] }),
    consumerRef,
    retire: bool({ description: 'The address left its pool: the host is deleted once released.' }),
    quarantine: object(
      { reason: string(), message: string(), since: time() },
      {
        required: ['reason'],
        description: 'Set when the host could not be cleaned; an operator removes it to release the host.',
      },
    ),
  },
  { required: ['address', 'poolRef'] },
);

export const hostStatus = object({
  phase: enumeration(HOST_PHASES),
  hostKeyFingerprint: string({ description: 'The SSH host key last seen (SHA256).' }),
  facts: object({ os: string(), kernel: string(), arch: string(), cpus: int(), memoryKiB: int() }),
  lastResetTime: time(),
  agentCertificate: object(
    { serial: string(), notBefore: time() },
    {
      required: ['serial', 'notBefore'],
      description:
        "The node agent's newest certificate for this claim: only it may report and renew. Cleared by the reset.",
    },
  ),
  conditions,
});

export type HostSpec = Infer<typeof hostSpec>;
export type HostStatus = Infer<typeof hostStatus>;
export type ConsumerRef = Infer<typeof consumerRef>;
export type BareMetalHost = Resource<'BareMetalHost', HostSpec, HostStatus>;
