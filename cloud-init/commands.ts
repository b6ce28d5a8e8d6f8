// bootcmd and runcmd items, as cloud-init's shellify turns them into shell: a string is shell text;
// a list is an argv, each element quoted, run without a shell's interpretation of its contents.
import { InvalidCloudConfig } from './errors.ts';
import { shQuote } from '../common/quote.ts';

export type Command = string | string[];

export function readCommands(value: unknown, key: string): Command[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new InvalidCloudConfig(key, 'must be a list of commands');
  return value.map((item, i) => {
    if (typeof item === 'string') return item;
    if (Array.isArray(item) && item.length > 0) {
      return item.map((a, j) => {
        if (typeof a === 'string') return a;
        if (typeof a === 'number' || typeof a === 'boolean') return String(a);
        throw new InvalidCloudConfig(`${key}[${i}][${j}]`, 'a command argument must be a string');
      });
    }
    throw new InvalidCloudConfig(`${key}[${i}]`, 'a command is a string (run by sh) or a non-empty list (an argv)');
  });
}

/**
 * The shell body running one command. A string goes to `sh -c` on its own, so each item can be
 * retried alone (cloud-init runs all items in one script, where a `cd` carries over: a documented
 * difference). A list is exec'd as an argv: every element single-quoted, nothing expanded.
 */
export function commandBody(c: Command): string {
  if (typeof c === 'string') return `sh -c ${shQuote(c)}`;
  return c.map(shQuote).join(' ');
}
