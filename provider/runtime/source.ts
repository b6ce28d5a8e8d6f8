// Keys that come from outside the informers: a background task that finished, an agent report
// that changed a host's health. controller-runtime calls this source.Channel. A producer is given
// the channel when it is built and sends keys; a controller that lists the channel among its
// sources queues them. Nothing is wired after construction.
export class Channel {
  readonly #subscribers = new Set<(key: string, priority: number) => void>();

  /** priority: the work queue's (workqueue.ts), 0 by default. */
  send(key: string, priority = 0): void {
    for (const s of this.#subscribers) s(key, priority);
  }

  /** Returns the unsubscribe function. */
  subscribe(fn: (key: string, priority: number) => void): () => void {
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }
}
