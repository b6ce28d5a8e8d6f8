// Root through `sudo` with a password, without the password ever reaching the command. sudo reads
// the password from stdin only when it asks for it: with NOPASSWD, or a cached timestamp, it does
// not ask, and a password sent up front would become the first line of the command's input (the
// top of an uploaded file). So the command is wrapped to announce itself, and the client answers
// the prompt only when it sees it, then sends the command's input only once the command runs:
//
//   sudo -S -p '<prompt>\n' -- sh -c 'echo <ready> >&2; <command>'
//
// A second prompt means the password was refused: the session is ended, nothing more is sent.
import { shQuote } from '../../common/quote.ts';

const PROMPT = 'capbm-sudo-prompt';
const READY = 'capbm-sudo-ready';

/** The command wrapped for sudo with a password. */
export function sudoWithPassword(command: string): string {
  return `sudo -S -p ${shQuote(`${PROMPT}\n`)} -- sh -c ${shQuote(`echo ${READY} >&2; ${command}`)}`;
}

export interface GateIO {
  /** Writes to the command's stdin (the password, before it runs). */
  write(data: string): void;
  /** Sends the command's own input and closes stdin: the command runs. */
  open(): void;
  /** sudo refused the password. */
  refused(): void;
}

/**
 * Watches stderr for the prompt and the ready line. Returns the stderr text to keep (both control
 * lines removed, so they never show in output or errors).
 */
export class SudoGate {
  readonly #password: string;
  readonly #io: GateIO;
  #partial = '';
  #asked = false;
  #open = false;

  constructor(password: string, io: GateIO) {
    this.#password = password;
    this.#io = io;
  }

  /** Feed a stderr chunk; returns what of it is the command's own output. */
  stderr(text: string): string {
    if (this.#open) return text;
    const lines = (this.#partial + text).split('\n');
    this.#partial = lines.pop() ?? '';
    const kept: string[] = [];
    for (const line of lines) {
      if (line === PROMPT) this.#prompt();
      else if (line === READY) this.#ready();
      else kept.push(`${line}\n`);
    }
    const rest = this.#open ? this.#partial : '';
    if (this.#open) this.#partial = '';
    return kept.join('') + rest;
  }

  #prompt(): void {
    if (this.#asked) return this.#io.refused();
    this.#asked = true;
    this.#io.write(`${this.#password}\n`);
  }

  #ready(): void {
    this.#open = true;
    this.#io.open();
  }
}
