// Bootstrap data -> one POSIX sh script that applies it in cloud-init's module order:
//   bootcmd, write_files, users/groups, ntp, write_files (deferred), runcmd
// (init stage: bootcmd, write_files, users_groups; config stage: ntp; final stage:
// write_files_deferred, then scripts_user runs runcmd; canonical/cloud-init config/cloud.cfg.tmpl).
//
// The script is idempotent and resumable: each step leaves a marker in <stateDir>/<instance>/steps
// when it succeeds and is skipped when run again; bootcmd runs every time, as cloud-init runs it on
// every boot. Each start and end is also appended to <stateDir>/<instance>/steps/journal ("<id>
// <frequency> start|done|fail"), the evidence that no once-step started again after it was done. Every output line carries its step id, and the progress lines (progress.ts) say when
// each step starts, ends, is skipped or fails. Differences from cloud-init, all deliberate:
// - a failed write_files step stops the script before any command runs (cloud-init would go on and
//   run kubeadm without its configuration); failed commands do not stop it, as in cloud-init;
// - each string runcmd item runs in its own `sh -c`, so it can be retried alone: a `cd` or a
//   variable does not carry over to the next item;
// - mounts, disk_setup and fs_setup are refused before anything runs; unknown keys are warned about.
import { InvalidCloudConfig, UnsupportedModule } from './errors.ts';
import { commandBody, readCommands } from './commands.ts';
import { templateVars, type MetaData } from './metadata.ts';
import { ntpBody, readNtp } from './ntp.ts';
import { parseBootstrapData, type CloudConfig } from './parse.ts';
import { shQuote } from '../common/quote.ts';
import { groupsBody, readGroups, readUsers, userBody } from './users.ts';
import { readWriteFiles, writeFileBody } from './write-files.ts';

export interface RenderOptions {
  /** Instance data for `## template: jinja` payloads (ds.meta_data.*, v1.*). */
  metaData: MetaData;
  /** Where step markers live. Default /var/lib/capbm. */
  stateDir?: string;
  /** Prefix for every path written (write_files, sudoers, ntp, state): tests run in a folder. Default ''. */
  root?: string;
  /** The Secret's `format` key, when known. */
  format?: string;
}

export type StepFrequency = 'once' | 'always';

export interface Step {
  id: string;
  module: 'bootcmd' | 'write_files' | 'users_groups' | 'ntp' | 'write_files_deferred' | 'runcmd';
  /** Whether a failure stops the script. */
  fatal: boolean;
  frequency: StepFrequency;
  /** What it does, for people (never file contents). */
  description: string;
  body: string;
}

export interface RenderResult {
  script: string;
  steps: Array<Omit<Step, 'body'>>;
  warnings: string[];
  /** Absolute paths (without root) the script writes: the reset removes them. */
  files: string[];
}

const handled = new Set(['bootcmd', 'write_files', 'users', 'groups', 'ntp', 'runcmd']);
const refused = ['mounts', 'disk_setup', 'fs_setup'];

function refuse(cfg: CloudConfig): void {
  for (const key of refused) {
    const v = cfg[key];
    const empty =
      v === undefined ||
      v === null ||
      (Array.isArray(v) && v.length === 0) ||
      (typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0);
    if (!empty) {
      throw new UnsupportedModule(
        key,
        `cloud-config "${key}" is not supported: CAPBM does not partition, format or mount disks; prepare them on the host and remove ${key} from the KubeadmConfig`,
      );
    }
  }
}

function fileSteps(
  cfg: CloudConfig,
  o: Required<Pick<RenderOptions, 'root'>> & { stepsDir: string },
  warn: (w: string) => void,
) {
  const files = readWriteFiles(cfg.write_files, warn);
  const step = (f: (typeof files)[number], i: number, module: Step['module']): Step => {
    const id = `${module}.${i}`;
    return {
      id,
      module,
      fatal: true,
      frequency: 'once',
      description: `${f.append ? 'append to' : 'write'} ${f.path} (mode ${f.mode.toString(8).padStart(4, '0')}, owner ${f.owner})`,
      body: writeFileBody(f, o.root, `${o.stepsDir}/${id}.orig`),
    };
  };
  return {
    now: files
      .map((f, i) => ({ f, i }))
      .filter(({ f }) => !f.defer)
      .map(({ f, i }) => step(f, i, 'write_files')),
    deferred: files
      .map((f, i) => ({ f, i }))
      .filter(({ f }) => f.defer)
      .map(({ f, i }) => step(f, i, 'write_files_deferred')),
    paths: files.map((f) => f.path),
  };
}

function commandSteps(cfg: CloudConfig, key: 'bootcmd' | 'runcmd'): Step[] {
  return readCommands(cfg[key], key).map((c, i) => ({
    id: `${key}.${i}`,
    module: key,
    fatal: false,
    frequency: key === 'bootcmd' ? 'always' : 'once',
    description: `${key} item ${i}`,
    body: commandBody(c),
  }));
}

function accountSteps(cfg: CloudConfig, root: string, warn: (w: string) => void): Step[] {
  const groups = readGroups(cfg.groups);
  const users = readUsers(cfg.users, warn);
  const steps: Step[] = [];
  if (groups.length) {
    steps.push({
      id: 'groups',
      module: 'users_groups',
      fatal: false,
      frequency: 'once',
      description: `groups ${groups.map((g) => g.name).join(', ')}`,
      body: groupsBody(groups),
    });
  }
  users.forEach((u, i) =>
    steps.push({
      id: `users.${i}`,
      module: 'users_groups',
      fatal: false,
      frequency: 'once',
      description: `user ${u.name}`,
      body: userBody(u, `${root}/etc/sudoers.d/90-cloud-init-users`),
    }),
  );
  return steps;
}

function prelude(stepsDir: string, ledger: string, ids: string[]): string {
  return `#!/bin/sh
# Rendered by capbm from cloud-config bootstrap data. Steps: ${ids.join(' ')}
# Run it again after a failure: completed steps are skipped. Progress lines: CAPBM-STEP <id> <event>.
umask 022
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
CAPBM_STEPS=${shQuote(stepsDir)}
CAPBM_LEDGER=${shQuote(ledger)}
CAPBM_FAILED=
mkdir -p "$CAPBM_STEPS" || { echo "CAPBM-RESULT fail prepare 1"; exit 1; }
chmod 700 "$CAPBM_STEPS"

capbm_step() { # id frequency fatal function
  if [ "$2" = once ] && [ -e "$CAPBM_STEPS/$1.done" ]; then echo "CAPBM-STEP $1 skip"; return 0; fi
  echo "CAPBM-STEP $1 start"
  echo "$1 $2 start" >> "$CAPBM_STEPS/journal"
  rm -f "$CAPBM_STEPS/.rc"
  { "$4" </dev/null; echo $? > "$CAPBM_STEPS/.rc"; } 2>&1 | while IFS= read -r capbm_line || [ -n "$capbm_line" ]; do
    printf '[capbm %s] %s\\n' "$1" "$capbm_line"
  done
  capbm_rc=$(cat "$CAPBM_STEPS/.rc" 2>/dev/null || echo 1)
  if [ "$capbm_rc" = 0 ]; then
    [ "$2" = once ] && : > "$CAPBM_STEPS/$1.done"
    echo "$1 $2 done" >> "$CAPBM_STEPS/journal"
    echo "CAPBM-STEP $1 done"
    return 0
  fi
  echo "$1 $2 fail" >> "$CAPBM_STEPS/journal"
  echo "CAPBM-STEP $1 fail $capbm_rc"
  [ -n "$CAPBM_FAILED" ] || CAPBM_FAILED="$1 $capbm_rc"
  if [ "$3" = fatal ]; then echo "CAPBM-RESULT fail $CAPBM_FAILED"; exit 1; fi
  return 0
}
`;
}

function epilogue(): string {
  return `
if [ -n "$CAPBM_FAILED" ]; then echo "CAPBM-RESULT fail $CAPBM_FAILED"; exit 1; fi
echo "CAPBM-RESULT ok"
`;
}

function warnUnknown(cfg: CloudConfig, warn: (w: string) => void): void {
  const unknown = Object.keys(cfg).filter((k) => !handled.has(k) && !refused.includes(k));
  if (unknown.length) warn(`cloud-config keys not applied by CAPBM (cloud-init would): ${unknown.sort().join(', ')}`);
}

/** Renders bootstrap data (the Secret's `value`) to a script. Throws a typed error on bad input. */
export function render(bootstrapData: string, options: RenderOptions): RenderResult {
  if (!options.metaData?.instance_id || !/^[A-Za-z0-9._-]+$/.test(options.metaData.instance_id)) {
    throw new InvalidCloudConfig(
      'metaData.instance_id',
      'an instance id of letters, digits, ".", "_" or "-" is required',
    );
  }
  const cfg = parseBootstrapData(bootstrapData, templateVars(options.metaData), options.format);
  refuse(cfg);
  const warnings: string[] = [];
  const warn = (w: string) => warnings.push(w);
  warnUnknown(cfg, warn);
  const root = (options.root ?? '').replace(/\/+$/, '');
  const stepsDir = `${root}${options.stateDir ?? '/var/lib/capbm'}/${options.metaData.instance_id}/steps`;
  const files = fileSteps(cfg, { root, stepsDir }, warn);
  const ntp = readNtp(cfg.ntp);
  const steps: Step[] = [
    ...commandSteps(cfg, 'bootcmd'),
    ...files.now,
    ...accountSteps(cfg, root, warn),
    ...(ntp?.enabled
      ? [
          {
            id: 'ntp',
            module: 'ntp',
            fatal: false,
            frequency: 'once',
            description: `ntp servers ${[...ntp.servers, ...ntp.pools].join(', ')}`,
            body: ntpBody(ntp, root),
          } as Step,
        ]
      : []),
    ...files.deferred,
    ...commandSteps(cfg, 'runcmd'),
  ];
  // Bodies stay at column 0: here-documents end at a delimiter alone on its line.
  const fns = steps.map((s, i) => `capbm_s${i}() (\nset -e\n${s.body}\n)`);
  const calls = steps.map(
    (s, i) => `capbm_step ${shQuote(s.id)} ${s.frequency} ${s.fatal ? 'fatal' : 'continue'} capbm_s${i}`,
  );
  const script = [
    prelude(
      stepsDir,
      `${root}${options.stateDir ?? '/var/lib/capbm'}/ledger`,
      steps.map((s) => s.id),
    ),
    ...fns,
    '',
    ...calls,
    epilogue(),
  ].join('\n');
  return { script, steps: steps.map(({ body: _body, ...rest }) => rest), warnings, files: files.paths };
}
