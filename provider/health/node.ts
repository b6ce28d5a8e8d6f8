// Writes the HostHealthy condition onto the workload cluster's Node, where MachineHealthCheck
// reads it (spec.checks.unhealthyNodeConditions). A strategic-merge patch of status.conditions
// (merge key "type", k8s.io/api/core/v1 NodeStatus.Conditions) touches only our condition; the
// kubelet and node-problem-detector write theirs the same way.
import type { KubeConfig } from '@kubernetes/client-node';
import { request, type RequestOptions } from 'node:https';
import { Nodes, objectPath } from '../kube/kinds.ts';
import { ApiError, raw } from '../kube/raw.ts';
import { nowRfc3339, type ConditionInput } from '../runtime/conditions.ts';

/** core/v1 NodeCondition */
export interface NodeCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastHeartbeatTime: string;
  lastTransitionTime: string;
}

interface Node {
  status?: { conditions?: NodeCondition[] };
}

export interface SetNodeConditionOptions {
  now?: Date;
  /**
   * Skip the write when status, reason and message are unchanged and the last heartbeat is
   * younger than this. Default 60 s: a report every 10 s does not become a write every 10 s.
   */
  heartbeatEveryMs?: number;
}

const toStatus = (s: ConditionInput['status']): NodeCondition['status'] =>
  s === true ? 'True' : s === false ? 'False' : s;

/** The Node condition to write, keeping lastTransitionTime while the status stays the same. */
export function nodeCondition(c: ConditionInput, existing: NodeCondition | undefined, now: Date): NodeCondition {
  const status = toStatus(c.status);
  const t = nowRfc3339(now);
  return {
    type: c.type,
    status,
    reason: c.reason,
    message: c.message ?? '',
    lastHeartbeatTime: t,
    lastTransitionTime: existing && existing.status === status ? existing.lastTransitionTime : t,
  };
}

function fresh(existing: NodeCondition | undefined, next: NodeCondition, now: Date, everyMs: number): boolean {
  return (
    !!existing &&
    existing.status === next.status &&
    existing.reason === next.reason &&
    (existing.message ?? '') === next.message &&
    now.getTime() - Date.parse(existing.lastHeartbeatTime) < everyMs
  );
}

function strategicPatch(kc: KubeConfig, path: string, body: unknown): Promise<void> {
  const server = kc.getCurrentCluster()?.server;
  if (!server) return Promise.reject(new Error('kubeconfig has no current cluster'));
  const payload = JSON.stringify(body);
  const opts: RequestOptions = {
    method: 'PATCH',
    headers: { Accept: 'application/json', 'Content-Type': 'application/strategic-merge-patch+json' },
  };
  return kc.applyToHTTPSOptions(opts).then(
    () =>
      new Promise<void>((resolve, reject) => {
        const req = request(new URL(path, server), opts, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            if ((res.statusCode ?? 0) < 300) return resolve();
            const text = Buffer.concat(chunks).toString('utf8');
            reject(new ApiError(res.statusCode ?? 0, `PATCH ${path}`, text, res.headers['retry-after']));
          });
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(payload);
      }),
  );
}

/**
 * Sets one condition on a workload cluster's Node (status subresource). Returns the condition as
 * written, or undefined when the write was skipped because nothing changed (see heartbeatEveryMs).
 * A missing Node is an ApiError with code 404.
 */
export async function setNodeCondition(
  workloadKubeConfig: KubeConfig,
  nodeName: string,
  condition: ConditionInput,
  o: SetNodeConditionOptions = {},
): Promise<NodeCondition | undefined> {
  const now = o.now ?? new Date();
  const path = objectPath(Nodes, undefined, nodeName);
  const node = await raw<Node>(workloadKubeConfig, 'GET', path);
  const existing = node.status?.conditions?.find((c) => c.type === condition.type);
  const next = nodeCondition(condition, existing, now);
  if (fresh(existing, next, now, o.heartbeatEveryMs ?? 60_000)) return undefined;
  await strategicPatch(workloadKubeConfig, `${path}/status`, { status: { conditions: [next] } });
  return next;
}
