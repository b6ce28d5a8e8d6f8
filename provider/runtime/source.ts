// Keys that come from outside the informers: a background task that finished, an agent report
// that changed a host's health. controller-runtime calls this source.Channel. A producer is given
// the channel when it is built and sends keys; a controller that lists the channel among its
// sources queues them. Nothing is wired after construction.
export class Channel {
  readonly #subscribers = new Set<(key: string) => void>();

  send(key: string): void {
    for (const s of this.#subscribers) s(key);
  }

  /** Returns the unsubscribe function. */
  subscribe(fn: (key: string) => void): () => void {
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }
}
