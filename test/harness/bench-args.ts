// Command-line flags of the benchmarks (hack/benchmarks/*.ts): `--name value`, durations as 500ms,
// 20s or 2m. One parser, so every benchmark says the same thing about a bad value.

/** The value after `--name`, or `def`. */
export function flag(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

/** A duration in ms; `name` is the flag it came from, for the error. */
export function toMs(name: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(v);
  if (!m) throw new Error(`--${name} ${v}: give a duration such as 500ms, 20s or 2m`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] as 'ms' | 's' | 'm'];
}

/** The duration flag `--name`, or `def`, in ms. */
export const duration = (name: string, def: string): number => toMs(name, flag(name, def));

/** `--name value` given to the benchmark, passed on to the provider as `--as=value` (none if absent). */
export function passOn(name: string, as: string = name): string[] {
  return process.argv.includes(`--${name}`) ? [`--${as}=${flag(name, '')}`] : [];
}
