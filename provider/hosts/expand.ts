// Pool addresses -> the list of host addresses, with ipaddr.js. Pure.
//
// Rules (docs/api.md): an entry is an address, a CIDR or an inclusive range "first-last", IPv4 or
// IPv6. An IPv4 CIDR of /30 or wider excludes its network and broadcast addresses; /31 and /32 are
// all hosts (RFC 3021). An IPv6 CIDR excludes its subnet-router anycast address (the first) when it
// is /126 or wider. `exclude` entries use the same forms. A pool that would expand past
// MAX_POOL_ADDRESSES is refused before anything is listed.
import ipaddr from 'ipaddr.js';
import { MAX_POOL_ADDRESSES } from '../api/pool.ts';

export class PoolTooLarge extends Error {
  override name = 'PoolTooLarge';
  readonly count: bigint;
  constructor(count: bigint) {
    super(
      `the pool expands to ${count} addresses, more than the ${MAX_POOL_ADDRESSES} a pool may hold: split it into several pools`,
    );
    this.count = count;
  }
}

export class BadAddress extends Error {
  override name = 'BadAddress';
}

interface Span {
  v6: boolean;
  first: bigint;
  last: bigint;
}

function toBig(a: ipaddr.IPv4 | ipaddr.IPv6): bigint {
  return a.toByteArray().reduce((n, b) => (n << 8n) | BigInt(b), 0n);
}

function fromBig(n: bigint, v6: boolean): string {
  const len = v6 ? 16 : 4;
  const bytes: number[] = [];
  for (let i = 0; i < len; i++) bytes.unshift(Number((n >> BigInt(8 * i)) & 0xffn));
  return ipaddr.fromByteArray(bytes).toString();
}

function parseIp(s: string, entry: string): ipaddr.IPv4 | ipaddr.IPv6 {
  if (!ipaddr.isValid(s)) throw new BadAddress(`"${entry}": "${s}" is not an IP address`);
  const a = ipaddr.parse(s);
  return a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress() ? (a as ipaddr.IPv6).toIPv4Address() : a;
}

export function parseEntry(entry: string): Span {
  const e = entry.trim();
  if (e.includes('/')) {
    let net: [ipaddr.IPv4 | ipaddr.IPv6, number];
    try {
      net = ipaddr.parseCIDR(e);
    } catch {
      throw new BadAddress(`"${entry}" is not a CIDR`);
    }
    const v6 = net[0].kind() === 'ipv6';
    const bits = v6 ? 128 : 32;
    const size = 1n << BigInt(bits - net[1]);
    const base = toBig(net[0]) & ~(size - 1n);
    if (!v6 && net[1] <= 30) return { v6, first: base + 1n, last: base + size - 2n };
    if (v6 && net[1] <= 126) return { v6, first: base + 1n, last: base + size - 1n };
    return { v6, first: base, last: base + size - 1n };
  }
  const parts = e.split('-');
  if (parts.length === 2) {
    const [a, b] = [parseIp(parts[0]!.trim(), entry), parseIp(parts[1]!.trim(), entry)];
    if (a.kind() !== b.kind()) throw new BadAddress(`"${entry}": a range must not mix IPv4 and IPv6`);
    const [first, last] = [toBig(a), toBig(b)];
    if (first > last) throw new BadAddress(`"${entry}": the range starts above its end`);
    return { v6: a.kind() === 'ipv6', first, last };
  }
  const a = parseIp(e, entry);
  return { v6: a.kind() === 'ipv6', first: toBig(a), last: toBig(a) };
}

/** The pool's host addresses in order, without duplicates or exclusions. */
export function expandPool(addresses: readonly string[], exclude: readonly string[] = []): string[] {
  const spans = addresses.map(parseEntry);
  const total = spans.reduce((n, s) => n + (s.last - s.first + 1n), 0n);
  if (total > BigInt(MAX_POOL_ADDRESSES)) throw new PoolTooLarge(total);
  const excluded = exclude.map(parseEntry);
  const seen = new Set<string>();
  const out: string[] = [];
  for (const s of spans) {
    for (let n = s.first; n <= s.last; n++) {
      if (excluded.some((x) => x.v6 === s.v6 && n >= x.first && n <= x.last)) continue;
      const ip = fromBig(n, s.v6);
      if (!seen.has(ip)) {
        seen.add(ip);
        out.push(ip);
      }
    }
  }
  return out;
}

/** The longest pool name whose host names stay within 253 characters (an IPv6 suffix is 40). */
export const MAX_POOL_NAME = 253 - 40;

/**
 * A DNS-safe, deterministic BareMetalHost name for an address of a pool, unique by construction:
 * IPv4 ends in four decimal groups of 1-3 digits (`rack1-10-0-0-12`), IPv6 in eight groups of
 * exactly four hex digits (`rack1-0012-0000-...`), so the name can be read back into one (pool,
 * address) pair: pool `rack1-10-0-0` with `12::` is `rack1-10-0-0-0012-0000-...`, never
 * `rack1-10-0-0-12`. Pool names longer than MAX_POOL_NAME are refused by the pool controller.
 */
export function hostName(pool: string, address: string): string {
  const ip = ipaddr.parse(address);
  const suffix =
    ip.kind() === 'ipv4'
      ? ip.toByteArray().join('-')
      : (ip as ipaddr.IPv6).parts.map((p) => p.toString(16).padStart(4, '0')).join('-');
  return `${pool}-${suffix}`;
}

/** Addresses in both lists (pool overlap), at most `limit`. */
export function overlap(a: readonly string[], b: readonly string[], limit = 5): string[] {
  const set = new Set(a);
  return b.filter((x) => set.has(x)).slice(0, limit);
}
