// The host simulator's hosts: what one simulated host answers to each command the provider sends
// over SSH (provider/controllers/host-ops.ts: the preflight, `id -u`, the run directory, uploads,
// the bootstrap's start or attach and its checks, the scrub, the reset; the SSH floor's `true`), and the state those
// commands leave (files uploaded, the run and its log, step markers, the sentinel). The bootstrap
// is not run: its step ids are read from the rendered script and each is reported started and done
// over a configurable duration, then the sentinel is written, as CABPK's runcmd would. Anything
// else is refused (exit 127, said on stderr and counted), so a provider change shows up here.
// Pure apart from timers: host-sim-server.ts puts it behind SSH, one address per host.

export interface SimStats {
  connections: number;
  /** Connections open now, and the most at once. */
  open: number;
  peakOpen: number;
  execs: Record<string, number>;
  runsStarted: number;
  /** Start commands that found a run there: going (attached) or ended (runsFoundEnded of them). */
  runsAttached: number;
  runsFoundEnded: number;
  runsCompleted: number;
  /** Runs started on a host that already had a run (another run directory) since its last reset. */
  runsOnHostAgain: number;
  /** Steps started on a host where they had started before since its last reset: a step run twice. */
  stepsRepeated: number;
  resets: number;
  unknown: number;
}

export const newStats = (): SimStats => ({
  connections: 0,
  open: 0,
  peakOpen: 0,
  execs: {},
  runsStarted: 0,
  runsAttached: 0,
  runsFoundEnded: 0,
  runsCompleted: 0,
  runsOnHostAgain: 0,
  stepsRepeated: 0,
  resets: 0,
  unknown: 0,
});

export interface SimRun {
  steps: string[];
  /** The log so far (ASCII: its length is its size in bytes). */
  log: string;
  rc?: number;
  timer?: NodeJS.Timeout;
}

export interface SimHost {
  address: string;
  /** Files the provider wrote (path -> content). */
  files: Map<string, string>;
  /** Run directory -> its run. */
  runs: Map<string, SimRun>;
  /** Steps done (the rendered script's markers: a step done is skipped when run again). */
  stepsDone: Set<string>;
  /** Steps started since the last reset (a step started again is counted: stepsRepeated). */
  stepsStarted: Set<string>;
  sentinel: boolean;
}

export const simHost = (address: string): SimHost => ({
  address,
  files: new Map(),
  runs: new Map(),
  stepsDone: new Set(),
  stepsStarted: new Set(),
  sentinel: false,
});

/** The session's side of one command: output lines as they come, then the exit code. */
export interface SimChannel {
  out(text: string): void;
  err(text: string): void;
  exit(code: number): void;
  /** Set by the command: called when the client goes away before the exit. */
  onClose?: () => void;
}

export interface SimOptions {
  /** How long a simulated bootstrap takes, in ms. */
  bootstrapMs: number;
  stats: SimStats;
}

/** The inverse of common/quote.ts shQuote for one quoted word. */
export function unquote(word: string): string {
  return word.startsWith("'") ? word.slice(1, -1).replaceAll(`'\\''`, "'") : word;
}

const quoted = String.raw`('(?:[^']|'\\'')*'|\S+)`;

/** Which command this is: a name for the stats and what it needs. */
export type SimCommand =
  | { kind: 'start'; dir: string }
  | { kind: 'check'; dir: string; offset: number; max: number }
  | { kind: 'upload'; path: string }
  | { kind: 'reset' }
  | { kind: 'preflight' }
  | { kind: 'id' }
  | { kind: 'mkdir' }
  | { kind: 'scrub'; paths: string[]; failed: boolean }
  | { kind: 'true' }
  | { kind: 'sleep'; ms: number }
  | { kind: 'unknown' };

export function classify(command: string): SimCommand {
  const dir = /^D=('(?:[^']|'\\'')*')$/m.exec(command);
  if (dir && command.includes('echo "CAPBM-RUN started"')) return { kind: 'start', dir: unquote(dir[1]!) };
  const check = /^o=(\d+)\nn=(\d+)$/m.exec(command);
  if (dir && check && command.includes('echo "CAPBM-CHECK '))
    return { kind: 'check', dir: unquote(dir[1]!), offset: Number(check[1]), max: Number(check[2]) };
  const up = new RegExp(String.raw`mv -f -- "\$t" ${quoted}; then`).exec(command);
  // provider/ssh/upload.ts, content of known size: one command that writes, checks the size, renames.
  if (/^t=\S+\numask 077\n/.test(command) && command.includes('cat > "$t"') && up)
    return { kind: 'upload', path: unquote(up[1]!) };
  if (command.includes('kubeadm reset -f')) return { kind: 'reset' };
  if (command.includes('echo "os=')) return { kind: 'preflight' };
  if (command === 'id -u') return { kind: 'id' };
  if (/^mkdir -p '[^']*' && chmod 700 /.test(command)) return { kind: 'mkdir' };
  const scrub = new RegExp(String.raw`^rm -f ${quoted} ${quoted}`).exec(command);
  if (scrub && command.endsWith('\ntrue'))
    return { kind: 'scrub', paths: [unquote(scrub[1]!), unquote(scrub[2]!)], failed: command.includes('while IFS=') };
  if (command === 'true') return { kind: 'true' };
  const sleep = /^capbm-sim-sleep (\d+)$/.exec(command);
  if (sleep) return { kind: 'sleep', ms: Number(sleep[1]) };
  return { kind: 'unknown' };
}

/** The step ids of a script rendered by cloud-init/render.ts, in order. */
export function stepIds(script: string): string[] {
  return [...script.matchAll(new RegExp(String.raw`^capbm_step ${quoted} `, 'gm'))].map((m) => unquote(m[1]!));
}

const preflightOutput = () =>
  [
    'os=debian 12',
    'kernel=6.1.0-simulated',
    'arch=x86_64',
    'cpus=2',
    'memory_kib=4096000',
    'swap_kib=0',
    `epoch=${Math.round(Date.now() / 1000)}`,
    'uid=0',
    '',
  ].join('\n');

/** Starts the simulated bootstrap: each step start and done over bootstrapMs, then rc and sentinel. */
function startRun(h: SimHost, r: SimRun, o: SimOptions): void {
  const events: string[] = [];
  for (const id of r.steps) {
    if (h.stepsDone.has(id)) events.push(`CAPBM-STEP ${id} skip`);
    else events.push(`CAPBM-STEP ${id} start`, `CAPBM-STEP ${id} done`);
  }
  const every = o.bootstrapMs / Math.max(1, events.length);
  let i = 0;
  const next = () => {
    const line = events[i++];
    if (line === undefined) {
      r.timer = undefined;
      r.log += 'CAPBM-RESULT ok\n';
      h.sentinel = true;
      r.rc = 0;
      o.stats.runsCompleted++;
      return;
    }
    const id = line.split(' ')[1]!;
    if (line.endsWith(' done')) h.stepsDone.add(id);
    if (line.endsWith(' start') && h.stepsStarted.has(id)) o.stats.stepsRepeated++;
    if (line.endsWith(' start')) h.stepsStarted.add(id);
    r.log += `${line}\n`;
    r.timer = setTimeout(next, line.endsWith(' start') ? every * 2 : 0);
  };
  r.timer = setTimeout(next, 0);
}

/** The start command: start the run (its script uploaded), attach to it, or say it ended. */
function start(h: SimHost, dir: string, ch: SimChannel, o: SimOptions): void {
  const r = h.runs.get(dir);
  if (r) {
    h.files.delete(`${dir}/bootstrap.sh.new`);
    o.stats.runsAttached++;
    if (r.rc !== undefined) o.stats.runsFoundEnded++;
    ch.out(r.rc === undefined ? 'CAPBM-RUN attached\n' : 'CAPBM-RUN ended\n');
    return ch.exit(0);
  }
  const script = h.files.get(`${dir}/bootstrap.sh.new`);
  if (script === undefined) {
    ch.out('CAPBM-RUN no-script\n');
    return ch.exit(0);
  }
  h.files.delete(`${dir}/bootstrap.sh.new`);
  h.files.set(`${dir}/bootstrap.sh`, script);
  const run: SimRun = { steps: stepIds(script), log: '' };
  if (h.runs.size > 0) o.stats.runsOnHostAgain++;
  h.runs.set(dir, run);
  o.stats.runsStarted++;
  startRun(h, run, o);
  ch.out('CAPBM-RUN started\n');
  ch.exit(0);
}

/** The check: the run's state and up to max bytes of its log from offset, in base64. */
function check(h: SimHost, c: { dir: string; offset: number; max: number }, ch: SimChannel): void {
  const r = h.runs.get(c.dir);
  const log = r && h.files.has(`${c.dir}/bootstrap.sh`) ? r.log : ''; // the scrub removed it
  const alive = r !== undefined && r.rc === undefined;
  const head = `CAPBM-CHECK rc=${r?.rc ?? 'none'} alive=${alive ? 'yes' : 'no'} sentinel=${h.sentinel ? 'yes' : 'no'} size=${log.length}`;
  ch.out(`${head}\n${Buffer.from(log.slice(c.offset, c.offset + c.max)).toString('base64')}\n`);
  ch.exit(0);
}

function reset(h: SimHost): void {
  for (const r of h.runs.values()) clearTimeout(r.timer);
  h.runs.clear();
  h.files.clear();
  h.stepsDone.clear();
  h.stepsStarted.clear();
  h.sentinel = false;
}

/**
 * Answers one command on a host. `stdin` resolves to what the client sent (uploads read it).
 * Returns at once; the channel gets the output and the exit code, now or later (the bootstrap).
 */
export function answer(h: SimHost, command: string, stdin: () => Promise<string>, ch: SimChannel, o: SimOptions): void {
  const c = classify(command);
  o.stats.execs[c.kind] = (o.stats.execs[c.kind] ?? 0) + 1;
  switch (c.kind) {
    case 'start':
      return start(h, c.dir, ch, o);
    case 'check':
      return check(h, c, ch);
    case 'upload':
      void stdin().then((content) => {
        h.files.set(c.path, content);
        ch.exit(0);
      });
      return;
    case 'reset':
      o.stats.resets++;
      reset(h);
      return ch.exit(0);
    case 'preflight':
      ch.out(preflightOutput());
      return ch.exit(0);
    case 'id':
      ch.out('0\n');
      return ch.exit(0);
    case 'scrub':
      for (const p of c.paths) h.files.delete(p);
      return ch.exit(0);
    case 'mkdir':
    case 'true':
      return ch.exit(0);
    case 'sleep': {
      const t = setTimeout(() => ch.exit(0), c.ms);
      ch.onClose = () => clearTimeout(t);
      return;
    }
    case 'unknown':
      o.stats.unknown++;
      ch.err(`capbm host simulator: this command is not simulated: ${command.slice(0, 80).replace(/\n/g, ' ')}\n`);
      return ch.exit(127);
  }
}
