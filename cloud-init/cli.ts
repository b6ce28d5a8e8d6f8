// capbm render --bootstrap-data FILE [--meta-data FILE] [--state-dir DIR]
// Prints the script CAPBM would run on a host for this bootstrap data, without running anything,
// so a person can read it before trusting the provider. Warnings go to stderr.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { BootstrapDataError } from './errors.ts';
import { readMetaData, type MetaData } from './metadata.ts';
import { render } from './render.ts';

const usage = 'usage: capbm render --bootstrap-data FILE [--meta-data FILE] [--state-dir DIR]';

function fail(message: string, code = 1): never {
  process.stderr.write(`capbm: ${message}\n`);
  process.exit(code);
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    return fail(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The meta data templates see: a NoCloud meta-data file read as cloud-init reads it, or defaults. */
function metaData(file: string | undefined): MetaData {
  const defaults: MetaData = {
    instance_id: 'capbm-render',
    local_hostname: 'capbm-render',
    hostname: 'capbm-render',
    local_ipv4: '127.0.0.1',
    provider_id: 'capbm://render/capbm-render',
  };
  if (!file) return defaults;
  const doc = parseYaml(readText(file, 'meta data')) as unknown;
  if (!doc || typeof doc !== 'object' || Array.isArray(doc))
    fail(`${file}: meta data must be a mapping such as "instance-id: m1" (a NoCloud meta-data file)`);
  const { meta, warnings } = readMetaData(doc as Record<string, unknown>, defaults);
  for (const w of warnings) process.stderr.write(`capbm: warning: ${file}: ${w}\n`);
  return meta;
}

function main(argv: string[]): void {
  const [command, ...rest] = argv;
  if (command !== 'render') fail(command ? `unknown command "${command}"\n${usage}` : usage, 2);
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        'bootstrap-data': { type: 'string' },
        'meta-data': { type: 'string' },
        'state-dir': { type: 'string' },
      },
    }));
  } catch (err) {
    return fail(`${(err as Error).message}\n${usage}`, 2);
  }
  const file = values['bootstrap-data'];
  if (!file) fail(`--bootstrap-data is required\n${usage}`, 2);
  try {
    const result = render(readText(file, 'bootstrap data'), {
      metaData: metaData(values['meta-data']),
      stateDir: values['state-dir'],
    });
    for (const w of result.warnings) process.stderr.write(`capbm: warning: ${w}\n`);
    process.stdout.write(result.script);
  } catch (err) {
    if (err instanceof BootstrapDataError) fail(`${file}: ${err.message}`);
    throw err;
  }
}

main(process.argv.slice(2));
