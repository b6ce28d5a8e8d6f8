// A bound on work in flight that a holder may give back before its work ends (p-queue keeps the
// slot until the task returns): taken in the order asked, given back exactly once.

export class Slots {
  readonly #max: number;
  #used = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(max: number) {
    if (!(max >= 1)) throw new Error(`Slots needs at least 1, got ${max}`);
    this.#max = max;
  }

  /** Waits for a slot; resolves to the function that gives it back (idempotent). */
  async take(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.#used < this.#max) this.#used++;
    else await this.#wait(signal);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#give();
    };
  }

  /** Runs fn within a slot; fn may give it back early. */
  async run<T>(fn: (giveBack: () => void) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const giveBack = await this.take(signal);
    try {
      return await fn(giveBack);
    } finally {
      giveBack();
    }
  }

  get inUse(): number {
    return this.#used;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  #wait(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const go = () => {
        signal?.removeEventListener('abort', abort);
        resolve();
      };
      const abort = () => {
        const i = this.#waiting.indexOf(go);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(signal!.reason as Error);
      };
      this.#waiting.push(go);
      signal?.addEventListener('abort', abort, { once: true });
    });
  }

  #give(): void {
    const next = this.#waiting.shift();
    if (next)
      next(); // the slot passes on: #used stays
    else this.#used--;
  }
}
