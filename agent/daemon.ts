// The agent's loop: every interval, run the checks, report them to the provider, learn the clock
// skew from the answer, and renew the agent's own certificate when two thirds of its life are
// gone. The agent renews itself (POST /v1/renew over its current identity, sending a new public
// key and a proof that it holds the private one, which never leaves the host) so that a host the
// provider does not reconcile for a day still reports. The provider accepts only the newest
// certificate of the host's current claim: a reset or reinstall ends the old identity at once.
import { createSign, generateKeyPair, randomBytes, X509Certificate } from 'node:crypto';
import { promisify } from 'node:util';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from '../common/log.ts';
import { runChecks, newCheckState, type CheckState } from './checks/index.ts';
import { measureSkew } from './checks/clock.ts';
import { httpGet, type CheckEnv } from './checks/env.ts';
import { ProviderClient, type Identity } from './client.ts';
import type { AgentConfig } from './config.ts';
import {
  needsRotation,
  renewPath,
  renewProof,
  reportPath,
  type RenewRequest,
  type Rejected,
  type Renewed,
  type Report,
  type ReportAccepted,
} from '../common/agent-protocol.ts';
import { runCommand } from './runner.ts';
import { firstReportDelayMs, nextReportDelayMs, worthRetrying } from './schedule.ts';

export const agentVersion = '0.1.0';

export interface AgentOptions {
  log: Logger;
  signal?: AbortSignal;
  /** Replaces parts of the check environment (tests). */
  env?: Partial<CheckEnv>;
  /** The wait before the first report; default a random part of the interval (schedule.ts). */
  firstReportDelayMs?: number;
}

export function readIdentity(cfg: AgentConfig): Identity {
  return {
    certPem: readFileSync(cfg.pki.cert, 'utf8'),
    keyPem: readFileSync(cfg.pki.key, 'utf8'),
    caPem: readFileSync(cfg.pki.ca, 'utf8'),
  };
}

/** Replaces a file atomically with a 0600 file. */
function writeSecretFile(path: string, content: string): void {
  const tmp = `${path}.new`;
  writeFileSync(tmp, content, { mode: 0o600 });
  renameSync(tmp, path);
}

const generateRsa = promisify(generateKeyPair);

/** The agent's next key pair (RSA: the provider's signer takes only RSA subject keys). */
function newKeyPair(): Promise<{ publicKey: string; privateKey: string }> {
  return generateRsa('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

class Agent {
  readonly cfg: AgentConfig;
  readonly o: AgentOptions;
  readonly env: CheckEnv;
  readonly state: CheckState;
  id: Identity;
  readonly client: ProviderClient;
  seq: number;
  offsetMs = 0;
  /** The last problem logged: the same one is not logged again every interval. */
  problem = '';

  constructor(cfg: AgentConfig, o: AgentOptions) {
    this.cfg = cfg;
    this.o = o;
    this.env = {
      root: cfg.root,
      run: runCommand,
      httpGet,
      now: () => Date.now() + this.offsetMs,
      thresholds: cfg.thresholds,
      ...o.env,
    };
    this.state = newCheckState(this.env);
    this.id = readIdentity(cfg);
    this.client = new ProviderClient(cfg.reportUrl, this.id);
    // Starts at the wall clock in ms and grows by one per report: a restarted agent is ahead of
    // every sequence number it sent before, without keeping state on disk.
    this.seq = Date.now();
  }

  #learnClock(sentAt: number, receivedAt: number, time: unknown): void {
    if (typeof time !== 'number' || !Number.isFinite(time)) return;
    this.state.skewMs = measureSkew(sentAt, receivedAt, time);
    this.offsetMs = this.state.skewMs;
  }

  warn(msg: string, fields: Record<string, unknown>): void {
    const key = msg + JSON.stringify(fields);
    if (key === this.problem) return;
    this.problem = key;
    this.o.log.warn(msg, fields);
  }

  recovered(): void {
    if (this.problem) this.o.log.info('reporting again');
    this.problem = '';
  }

  /** Sends the report; false when it should be tried again soon (no answer, 429, 5xx). */
  async report(): Promise<boolean> {
    const checks = await runChecks(this.env, this.cfg, this.state);
    for (let attempt = 0; attempt < 2; attempt++) {
      const body: Report = {
        host: this.cfg.host,
        ...(this.cfg.machine ? { machine: this.cfg.machine } : {}),
        seq: ++this.seq,
        nonce: randomBytes(16).toString('hex'),
        timestamp: Date.now() + this.offsetMs,
        agentVersion,
        checks,
      };
      const x = await this.client.post<ReportAccepted | Rejected>(reportPath, body);
      this.#learnClock(x.sentAt, x.receivedAt, x.body?.time);
      if (x.status === 200) {
        this.recovered();
        return true;
      }
      const reason = x.body && !x.body.accepted ? x.body.reason : undefined;
      // A clock far off: the answer told the provider's time; stamp the retry with it.
      if (reason === 'Stale' || reason === 'FromFuture') continue;
      this.warn('report rejected', { status: x.status, reason, detail: (x.body as Rejected)?.message });
      return !worthRetrying(x.status);
    }
    return true;
  }

  async renewIfDue(): Promise<void> {
    if (!needsRotation(this.id.certPem, Date.now() + this.offsetMs, this.cfg.renewFraction)) return;
    const keys = await newKeyPair();
    const serial = new X509Certificate(this.id.certPem).serialNumber;
    const proof = createSign('sha256').update(renewProof(this.cfg.host, serial)).sign(keys.privateKey, 'base64');
    const body: RenewRequest = { host: this.cfg.host, publicKeyPem: keys.publicKey, proof };
    const x = await this.client.post<Renewed | Rejected>(renewPath, body);
    if (x.status !== 200 || !x.body || !('certPem' in x.body)) {
      const b = x.body as Rejected | undefined;
      this.warn('certificate renewal refused', { status: x.status, reason: b?.reason, detail: b?.message });
      return;
    }
    writeSecretFile(this.cfg.pki.key, keys.privateKey);
    writeSecretFile(this.cfg.pki.cert, x.body.certPem);
    this.id = { ...this.id, certPem: x.body.certPem, keyPem: keys.privateKey };
    this.client.setIdentity(this.id);
    this.o.log.info('certificate renewed');
  }

  /** One report (and a renewal when due); false when the provider could not be reached. */
  async tick(): Promise<boolean> {
    try {
      if (!(await this.report())) return false;
      await this.renewIfDue();
      return true;
    } catch (err) {
      this.warn('cannot reach the provider', { error: err instanceof Error ? err.message : String(err) });
      return false;
    }
  }
}

/** Runs until the signal aborts. */
export async function runAgent(cfg: AgentConfig, o: AgentOptions): Promise<void> {
  const a = new Agent(cfg, o);
  const intervalMs = cfg.intervalSeconds * 1000;
  const first = o.firstReportDelayMs ?? firstReportDelayMs(intervalMs);
  o.log.info('agent started', { intervalSeconds: cfg.intervalSeconds, reportUrl: cfg.reportUrl, firstReportMs: first });
  // Agents started together (a fleet installed at once) spread their reports over the interval.
  await sleep(first, o.signal);
  let failures = 0;
  try {
    while (!o.signal?.aborted) {
      const started = Date.now();
      failures = (await a.tick()) ? 0 : failures + 1;
      await sleep(nextReportDelayMs({ intervalMs, elapsedMs: Date.now() - started, failures }), o.signal);
    }
  } finally {
    a.client.close();
  }
}
