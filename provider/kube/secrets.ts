// Secrets, read and created in one place: their data decoded to text, never logged, never cached
// here (a rotated key takes effect on the next read). Names go into the path through seg(), which
// refuses names that would leave the namespace.
import type { KubeConfig } from '@kubernetes/client-node';
import { collectionPath, objectPath, Secrets } from './kinds.ts';
import { ApiError, raw } from './raw.ts';

export interface SecretData {
  resourceVersion: string;
  /** Decoded (UTF-8) values by key. Secret. */
  data: Record<string, string>;
  labels: Record<string, string>;
}

interface SecretObject {
  metadata?: { resourceVersion?: string; labels?: Record<string, string> };
  data?: Record<string, string>;
}

/**
 * The provider may not read Secrets of this namespace: it was not granted (manifests/rbac/role.yaml
 * capbm-manager-secrets is bound per team namespace). A configuration problem, said on the object.
 */
export class SecretForbidden extends Error {
  override name = 'SecretForbidden';
  constructor(namespace: string, name: string) {
    super(
      `the provider may not read Secret ${namespace}/${name}: namespace ${namespace} has not granted it; bind ClusterRole capbm-manager-secrets there (kubectl create rolebinding capbm-manager-secrets -n ${namespace} --clusterrole=capbm-manager-secrets --serviceaccount=<manager namespace>:capbm-manager)`,
    );
  }
}

/**
 * The Secret's decoded data, or undefined when it does not exist; SecretForbidden when the
 * namespace has not granted the provider its Secrets. Other API errors are thrown.
 */
export async function readSecret(kc: KubeConfig, namespace: string, name: string): Promise<SecretData | undefined> {
  try {
    const s = await raw<SecretObject>(kc, 'GET', objectPath(Secrets, namespace, name));
    return {
      resourceVersion: s.metadata?.resourceVersion ?? '',
      data: Object.fromEntries(
        Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
      ),
      labels: s.metadata?.labels ?? {},
    };
  } catch (err) {
    if (err instanceof ApiError && err.code === 404) return undefined;
    if (err instanceof ApiError && err.code === 403) throw new SecretForbidden(namespace, name);
    throw err;
  }
}

/** Creates a Secret; false when one of that name exists already (another writer was first). */
export async function createSecret(
  kc: KubeConfig,
  namespace: string,
  name: string,
  data: Record<string, string>,
): Promise<boolean> {
  try {
    await raw(kc, 'POST', collectionPath(Secrets, namespace), {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: { name, namespace },
      data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    });
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.code === 409) return false;
    throw err;
  }
}
