// POSIX shell quoting. A single-quoted word is taken literally by sh: nothing inside expands.

/** One shell word that sh reads back as exactly `s` (any bytes but NUL). */
export function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}
