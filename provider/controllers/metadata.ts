// The values the provider gives the bootstrap's cloud-init templating (`## template: jinja`
// user data reads them as ds.meta_data.*), and the providerID format.
//
// providerID: `capbm://<namespace>/<host>`, where <host> is the BareMetalHost name in the pool's
// namespace. It is set once, when the machine is provisioned, never changed, and the kubelet gets
// the same string through `--provider-id={{ ds.meta_data.provider_id }}` in the bootstrap data, so
// CAPI can match the Node to the Machine (cluster-api internal/controllers/machine: providerID
// equality). The same host may serve another machine later: by then the old Node was deleted.

export interface MachineIdentity {
  namespace: string;
  /** The BareMetalMachine name: also the hostname and the Node name. */
  machineName: string;
  /** The BareMetalHost name. */
  hostName: string;
  /** The address the provider reaches the host on. */
  address: string;
}

export function providerID(namespace: string, hostName: string): string {
  return `capbm://${namespace}/${hostName}`;
}

export interface BootstrapMetaData {
  instance_id: string;
  local_hostname: string;
  hostname: string;
  local_ipv4?: string;
  local_ipv6?: string;
  provider_id: string;
}

/** cloud-init's ds.meta_data for a machine on a host. The Node is named after the machine. */
export function bootstrapMetaData(id: MachineIdentity): BootstrapMetaData {
  const v6 = id.address.includes(':');
  return {
    instance_id: id.machineName,
    local_hostname: id.machineName,
    hostname: id.machineName,
    ...(v6 ? { local_ipv6: id.address } : { local_ipv4: id.address }),
    provider_id: providerID(id.namespace, id.hostName),
  };
}
