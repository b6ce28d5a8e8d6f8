// A TCP proxy to the API server whose connections a test can cut and refuse: a network fault
// between one client and the API server, without touching the server.
import { KubeConfig } from '@kubernetes/client-node';
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface CutProxy {
  port: number;
  /** The kubeconfig at `kubeconfigPath` pointed at the proxy. */
  kubeconfig(kubeconfigPath: string): KubeConfig;
  /** Destroy every open connection. */
  cut(): void;
  /** Refuse new connections (true) or let them through again (false). */
  refuse(on: boolean): void;
  close(): Promise<void>;
}

export async function startCutProxy(target: URL): Promise<CutProxy> {
  const sockets = new Set<Socket>();
  let refusing = false;
  const server: Server = createServer((client) => {
    if (refusing) return client.destroy();
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    kubeconfig: (path) => {
      const kc = new KubeConfig();
      kc.loadFromFile(path);
      const current = kc.getCurrentCluster()!.name;
      kc.clusters = kc.clusters.map((c) => (c.name === current ? { ...c, server: `https://127.0.0.1:${port}` } : c));
      return kc;
    },
    cut: () => sockets.forEach((s) => s.destroy()),
    refuse: (on) => (refusing = on),
    close: () =>
      new Promise((r) => {
        sockets.forEach((s) => s.destroy());
        server.close(() => r());
      }),
  };
}
