// The instance data bootstrap templates may read: cloud-init exposes the datasource's meta data as
// ds.meta_data.* and standardized aliases as v1.* (cloud-init docs: instance-data, "v1" keys).
import type { TemplateVars } from './template.ts';

export interface MetaData {
  instance_id: string;
  local_hostname: string;
  hostname?: string;
  local_ipv4?: string;
  local_ipv6?: string;
  provider_id?: string;
  availability_zone?: string;
  region?: string;
  [key: string]: string | undefined;
}

/** ds.meta_data.* as given, and the v1.* aliases cloud-init derives from it. */
export function templateVars(meta: MetaData): TemplateVars {
  const md = Object.fromEntries(Object.entries(meta).filter(([, v]) => v !== undefined));
  const v1: Record<string, string> = {
    instance_id: meta.instance_id,
    local_hostname: meta.local_hostname,
    cloud_name: 'capbm',
    platform: 'capbm',
    subplatform: 'ssh',
  };
  if (meta.availability_zone) v1.availability_zone = meta.availability_zone;
  if (meta.region) v1.region = meta.region;
  return { ds: { meta_data: md }, v1 };
}
