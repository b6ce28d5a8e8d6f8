// What the health endpoint accepts from an agent: a report that parses into exactly the contract's
// fields (parseReport), once (ReplayGuard: per host, the highest sequence number and the last
// nonces, in bounded memory). Anything else is a Rejection with the HTTP status and reason to answer.
import { limits, type CheckResult, type RejectReason, type Report } from '../../common/agent-protocol.ts';

export class Rejection extends Error {
  readonly status: number;
  readonly reason: RejectReason;
  constructor(status: number, reason: RejectReason, message: string) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

interface Seen {
  seq: number;
  nonces: string[];
}

const noncesPerHost = 8;

/** Per host: the highest sequence number and the last few nonces, in bounded memory. */
export class ReplayGuard {
  readonly #hosts = new Map<string, Seen>();
  readonly #max: number;

  constructor(maxHosts: number) {
    this.#max = maxHosts;
  }

  get size(): number {
    return this.#hosts.size;
  }

  /** Records the report and returns true, or returns false for a replay (nothing recorded). */
  admit(host: string, seq: number, nonce: string): boolean {
    const s = this.#hosts.get(host);
    if (s && (seq <= s.seq || s.nonces.includes(nonce))) return false;
    const next = s ?? { seq, nonces: [] };
    next.seq = seq;
    next.nonces.push(nonce);
    if (next.nonces.length > noncesPerHost) next.nonces.shift();
    this.#hosts.delete(host); // re-insert: Map order is least recently seen first
    this.#hosts.set(host, next);
    if (this.#hosts.size > this.#max) this.#hosts.delete(this.#hosts.keys().next().value!);
    return true;
  }
}

const isStr = (v: unknown, max: number, min = 0): v is string =>
  typeof v === 'string' && v.length >= min && v.length <= max;

function checkResult(v: unknown): v is CheckResult {
  const c = v as CheckResult;
  return (
    typeof c === 'object' &&
    c !== null &&
    isStr(c.name, limits.checkName, 1) &&
    (c.status === 'ok' || c.status === 'failed' || c.status === 'unknown') &&
    isStr(c.reason, limits.reason) &&
    isStr(c.message, limits.message)
  );
}

function machineRef(v: unknown): boolean {
  if (v === undefined) return true;
  const m = v as { namespace?: unknown; name?: unknown };
  return typeof m === 'object' && m !== null && isStr(m.namespace, 63, 1) && isStr(m.name, 253, 1);
}

function isReport(r: Report): boolean {
  return (
    typeof r === 'object' &&
    r !== null &&
    isStr(r.host, limits.hostName, 1) &&
    machineRef(r.machine) &&
    Number.isSafeInteger(r.seq) &&
    r.seq > 0 &&
    isStr(r.nonce, limits.nonce, 16) &&
    /^[0-9a-f]+$/.test(r.nonce) &&
    Number.isFinite(r.timestamp) &&
    (r.agentVersion === undefined || isStr(r.agentVersion, 64))
  );
}

const validChecks = (checks: unknown): checks is CheckResult[] =>
  Array.isArray(checks) && checks.length <= limits.checks && checks.every(checkResult);

/** The report (only the fields the contract knows), or a Rejection saying what is wrong with it. */
export function parseReport(text: string): Report {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Rejection(400, 'Malformed', 'the body is not JSON');
  }
  const r = v as Report;
  if (!isReport(r) || !validChecks(r.checks)) throw new Rejection(400, 'Malformed', 'the body is not a valid report');
  return {
    host: r.host,
    ...(r.machine ? { machine: { namespace: r.machine.namespace, name: r.machine.name } } : {}),
    seq: r.seq,
    nonce: r.nonce,
    timestamp: r.timestamp,
    ...(r.agentVersion ? { agentVersion: r.agentVersion } : {}),
    checks: r.checks.map((c) => ({ name: c.name, status: c.status, reason: c.reason, message: c.message })),
  };
}
