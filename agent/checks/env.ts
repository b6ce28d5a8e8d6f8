// What every check may touch, injected: the filesystem root it reads under, the command runner,
// an HTTP getter and the clock. On a host root is "/"; unit tests point it at a temp folder.
import { get } from 'node:http';
import { join } from 'node:path';
import type { CheckResult, CheckStatus } from '../../common/agent-protocol.ts';
import type { CommandRunner } from '../runner.ts';
import type { Thresholds } from '../config.ts';

export type HttpGet = (url: string, timeoutMs: number) => Promise<{ status: number; body: string }>;

export interface CheckEnv {
  root: string;
  run: CommandRunner;
  httpGet: HttpGet;
  now: () => number;
  thresholds: Thresholds;
}

/** A path under the env's root. */
export const at = (env: Pick<CheckEnv, 'root'>, path: string): string => join(env.root, path);

export const result = (name: string, status: CheckStatus, reason: string, message = ''): CheckResult => ({
  name,
  status,
  reason,
  message,
});

/** A plain GET on loopback (kubelet's healthz), bounded in time and body size. */
export const httpGet: HttpGet = (url, timeoutMs) =>
  new Promise((resolve, reject) => {
    const req = get(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (body.length < 1024) body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });

export const errText = (err: unknown): string =>
  (err as NodeJS.ErrnoException)?.code ?? (err instanceof Error ? err.message : String(err));
