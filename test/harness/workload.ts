// Looking at a workload cluster the way its users do, through its own API server (the
// controlPlaneEndpoint, behind the lab's load balancer): Nodes, pods, the sample application, and
// a bounded probe loop that counts failed API requests while the control plane changes.
import type { KubeConfig } from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { request, type RequestOptions } from 'node:https';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { substitute } from './env.ts';
import { repoRoot } from './paths.ts';
import { waitFor } from './process.ts';
import { REGISTRY_NAME } from './registry.ts';
import { kubernetesVersions } from './lab.ts';

/** One request with a timeout; resolves with the status code and the body text. */
export async function call(
  kc: KubeConfig,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 10_000,
): Promise<{ status: number; text: string }> {
  const server = kc.getCurrentCluster()!.server;
  const opts: RequestOptions = { method, headers: { Accept: 'application/json' }, timeout: timeoutMs };
  await kc.applyToHTTPSOptions(opts);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  if (payload) opts.headers = { ...opts.headers, 'Content-Type': 'application/json' };
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, server), opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    req.end(payload);
  });
}

export async function get<T>(kc: KubeConfig, path: string): Promise<T> {
  const r = await call(kc, 'GET', path);
  if (r.status !== 200) throw new Error(`GET ${path}: HTTP ${r.status}: ${r.text.slice(0, 300)}`);
  return JSON.parse(r.text) as T;
}

type Cond = { type: string; status: string; reason?: string; message?: string; lastHeartbeatTime?: string };

export interface NodeView {
  name: string;
  ready: boolean;
  kubeletVersion: string;
  internalIP: string;
  providerID?: string;
  conditions: Cond[];
}

export async function nodes(kc: KubeConfig): Promise<NodeView[]> {
  const list = await get<{
    items: Array<{
      metadata: { name: string };
      spec: { providerID?: string };
      status: {
        conditions?: Cond[];
        nodeInfo: { kubeletVersion: string };
        addresses?: Array<{ type: string; address: string }>;
      };
    }>;
  }>(kc, '/api/v1/nodes');
  return list.items.map((n) => ({
    name: n.metadata.name,
    ready: !!n.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
    kubeletVersion: n.status.nodeInfo.kubeletVersion,
    internalIP: n.status.addresses?.find((a) => a.type === 'InternalIP')?.address ?? '',
    ...(n.spec.providerID ? { providerID: n.spec.providerID } : {}),
    conditions: n.status.conditions ?? [],
  }));
}

export interface PodView {
  name: string;
  namespace: string;
  node: string;
  phase: string;
  ready: boolean;
  ip: string;
}

export async function pods(kc: KubeConfig, namespace: string, selector?: string): Promise<PodView[]> {
  const q = selector ? `?labelSelector=${encodeURIComponent(selector)}` : '';
  const list = await get<{
    items: Array<{
      metadata: { name: string; namespace: string; deletionTimestamp?: string };
      spec: { nodeName?: string };
      status: { phase: string; podIP?: string; conditions?: Cond[] };
    }>;
  }>(kc, `/api/v1/namespaces/${namespace}/pods${q}`);
  return list.items
    .filter((p) => !p.metadata.deletionTimestamp)
    .map((p) => ({
      name: p.metadata.name,
      namespace: p.metadata.namespace,
      node: p.spec.nodeName ?? '',
      phase: p.status.phase,
      ready: !!p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
      ip: p.status.podIP ?? '',
    }));
}

/** Waits until the cluster has `count` Nodes, every one Ready. */
export function waitForNodesReady(kc: KubeConfig, count: number, timeoutMs = 300_000): Promise<NodeView[]> {
  return waitFor(
    `${count} Ready nodes`,
    async () => {
      const ns = await nodes(kc).catch(() => []);
      return ns.length === count && ns.every((n) => n.ready) ? ns : undefined;
    },
    timeoutMs,
    2000,
  );
}

/** Waits until every CoreDNS pod runs and is ready. */
export function waitForCoreDns(kc: KubeConfig, timeoutMs = 300_000): Promise<PodView[]> {
  return waitFor(
    'CoreDNS Running',
    async () => {
      const ps = await pods(kc, 'kube-system', 'k8s-app=kube-dns').catch(() => []);
      return ps.length > 0 && ps.every((p) => p.phase === 'Running' && p.ready) ? ps : undefined;
    },
    timeoutMs,
    2000,
  );
}

/** Creates the objects of a manifest (POST each; an existing one is left as it is). */
export async function createAll(kc: KubeConfig, text: string): Promise<void> {
  const kinds: Record<string, string> = {
    Deployment: 'apis/apps/v1/namespaces/NS/deployments',
    Service: 'api/v1/namespaces/NS/services',
    Pod: 'api/v1/namespaces/NS/pods',
  };
  for (const d of parseAllDocuments(text).map((x) => x.toJS() as { kind: string; metadata: { namespace?: string } })) {
    const path = `/${kinds[d.kind]!.replace('NS', d.metadata.namespace ?? 'default')}`;
    const r = await call(kc, 'POST', path, d);
    if (r.status !== 201 && r.status !== 409)
      throw new Error(`POST ${path}: HTTP ${r.status}: ${r.text.slice(0, 300)}`);
  }
}

/** The sample application (manifests/examples/hello.yaml) with the lab's image, two replicas ready. */
export async function deployHello(kc: KubeConfig, timeoutMs = 300_000): Promise<PodView[]> {
  const text = substitute(readFileSync(join(repoRoot, 'manifests/examples/hello.yaml'), 'utf8'), {
    IMAGE_REPOSITORY: REGISTRY_NAME,
    AGNHOST_VERSION: kubernetesVersions().current,
  });
  await createAll(kc, text);
  return waitFor(
    'the hello Deployment ready',
    async () => {
      const ps = await pods(kc, 'default', 'app=hello').catch(() => []);
      return ps.length === 2 && ps.every((p) => p.ready) ? ps : undefined;
    },
    timeoutMs,
    2000,
  );
}

export interface CrossNodeAnswer {
  /** The hello pod that asked, and its node. */
  client: string;
  clientNode: string;
  /** What `GET /hostname` on a hello pod on another node answered, asked by pod IP. */
  direct: string;
  targetNode: string;
  /** What the Service answered, asked by its DNS name (CoreDNS, kube-proxy). */
  viaService: string;
}

/**
 * A hello pod on one node asks the hello pod on another node for its name, by pod IP (the pod
 * network between nodes) and through the Service's DNS name (CoreDNS and kube-proxy): agnhost's
 * /dial, reached through the API server's pod proxy, as Kubernetes' own e2e tests check pod
 * connectivity.
 */
export async function crossNodeHttp(kc: KubeConfig, timeoutMs = 120_000): Promise<CrossNodeAnswer> {
  const hello = (await pods(kc, 'default', 'app=hello')).filter((p) => p.ready);
  const client = hello[0];
  const target = hello.find((p) => p.node !== client?.node);
  if (!client || !target) throw new Error(`the hello pods do not run on two nodes: ${JSON.stringify(hello)}`);
  const dial = (host: string, port: number) =>
    waitFor(
      `${client.name} to reach ${host}:${port}`,
      async () => {
        const r = await call(
          kc,
          'GET',
          `/api/v1/namespaces/default/pods/${client.name}:8080/proxy/dial?request=hostname&protocol=http&host=${host}&port=${port}&tries=1`,
        );
        if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.text.slice(0, 200)}`);
        const body = JSON.parse(r.text) as { responses?: string[]; errors?: string[] };
        if (!body.responses?.[0]) throw new Error(`no answer: ${body.errors?.join('; ') ?? r.text}`);
        return body.responses[0];
      },
      timeoutMs,
      1000,
    );
  return {
    client: client.name,
    clientNode: client.node,
    direct: await dial(target.ip, 8080),
    targetNode: target.node,
    viaService: await dial('hello.default.svc.cluster.local', 80),
  };
}

export interface ProbeCount {
  ok: number;
  failed: number;
  /** The first few failures, as seen by the client. */
  errors: string[];
}

/**
 * Asks the workload API server for a list every intervalMs until stop() resolves (bounded: at
 * most maxRequests), counting answers and failures: what a user of the cluster sees.
 */
export function probeApi(
  kc: KubeConfig,
  o: { intervalMs?: number; maxRequests?: number } = {},
): { stop(): Promise<ProbeCount> } {
  const count: ProbeCount = { ok: 0, failed: 0, errors: [] };
  let stopped = false;
  const fail = (why: string) => {
    count.failed++;
    if (count.errors.length < 10) count.errors.push(why.slice(0, 160));
  };
  const once = async () => {
    try {
      const r = await call(kc, 'GET', '/api/v1/namespaces/kube-system/configmaps?limit=1', undefined, 5000);
      if (r.status === 200) count.ok++;
      else fail(`HTTP ${r.status}: ${r.text}`);
    } catch (err) {
      fail((err as Error).message);
    }
  };
  const loop = (async () => {
    for (let i = 0; i < (o.maxRequests ?? 5000) && !stopped; i++) {
      await once();
      await new Promise((r) => setTimeout(r, o.intervalMs ?? 500));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return count;
    },
  };
}
