// Kubernetes Events on our objects, so `kubectl describe` shows what happened and what to do.
import type { KubeConfig } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { raw } from './raw.ts';

export interface Involved {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; uid?: string };
}

export interface EventSpec {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export async function recordEvent(kc: KubeConfig, obj: Involved, { type, reason, message }: EventSpec): Promise<void> {
  const now = new Date().toISOString();
  const { name, namespace, uid } = obj.metadata;
  await raw(kc, 'POST', `/api/v1/namespaces/${namespace}/events`, {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: `${name}.${randomBytes(6).toString('hex')}`, namespace },
    involvedObject: { apiVersion: obj.apiVersion, kind: obj.kind, name, namespace, uid },
    type,
    reason,
    message: message.slice(0, 1024),
    source: { component: 'capbm-manager' },
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  });
}
