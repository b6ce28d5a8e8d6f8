// Host-key policy: the provider connects only to hosts whose key it expects. Three ways to say
// what is expected: pinned SHA256 fingerprints, known_hosts content, or explicit trust-on-first-use,
// which accepts the first key seen and returns it so the caller records it (on the BareMetalHost);
// from then on the recorded fingerprint is pinned and a changed key is refused.
import { createHash, createHmac } from 'node:crypto';

export type HostKeyPolicy =
  | { kind: 'pinned'; fingerprints: string[] }
  | { kind: 'known-hosts'; content: string }
  | { kind: 'trust-on-first-use'; recorded?: string };

/** OpenSSH's fingerprint of a public key blob: "SHA256:" + unpadded base64 of its SHA-256. */
export function fingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

function hostPatterns(host: string, port: number): string[] {
  return port === 22 ? [host, `[${host}]:22`] : [`[${host}]:${port}`];
}

function matchesHost(field: string, host: string, port: number): boolean {
  const names = hostPatterns(host, port);
  if (field.startsWith('|1|')) {
    const [, , salt, hash] = field.split('|');
    if (!salt || !hash) return false;
    return names.some((n) => createHmac('sha1', Buffer.from(salt, 'base64')).update(n).digest('base64') === hash);
  }
  return field.split(',').some((f) => names.includes(f));
}

/** Fingerprints known_hosts content lists for host:port (@revoked lines are never accepted). */
export function knownHostsFingerprints(
  content: string,
  host: string,
  port: number,
): { accepted: string[]; revoked: string[] } {
  const accepted: string[] = [];
  const revoked: string[] = [];
  for (const raw of content.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const parts = line.split(/\s+/);
    const marker = parts[0]?.startsWith('@') ? parts.shift() : undefined;
    const [hosts, , key] = parts;
    if (!hosts || !key || marker === '@cert-authority' || !matchesHost(hosts, host, port)) continue;
    (marker === '@revoked' ? revoked : accepted).push(fingerprint(Buffer.from(key, 'base64')));
  }
  return { accepted, revoked };
}

export type HostKeyVerdict =
  { ok: true; fingerprint: string; firstUse: boolean } | { ok: false; fingerprint: string; expected: string[] };

export function verifyHostKey(policy: HostKeyPolicy, host: string, port: number, keyBlob: Buffer): HostKeyVerdict {
  const seen = fingerprint(keyBlob);
  switch (policy.kind) {
    case 'pinned':
      return policy.fingerprints.includes(seen)
        ? { ok: true, fingerprint: seen, firstUse: false }
        : { ok: false, fingerprint: seen, expected: policy.fingerprints };
    case 'known-hosts': {
      const { accepted, revoked } = knownHostsFingerprints(policy.content, host, port);
      return accepted.includes(seen) && !revoked.includes(seen)
        ? { ok: true, fingerprint: seen, firstUse: false }
        : { ok: false, fingerprint: seen, expected: accepted };
    }
    case 'trust-on-first-use':
      if (!policy.recorded) return { ok: true, fingerprint: seen, firstUse: true };
      return policy.recorded === seen
        ? { ok: true, fingerprint: seen, firstUse: false }
        : { ok: false, fingerprint: seen, expected: [policy.recorded] };
  }
}
