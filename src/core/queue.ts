/**
 * A queue of tasks keyed by conversation: tasks of one key run strictly one after another in
 * the order pushed; tasks of different keys run concurrently up to `concurrency`. A key whose
 * task is slow holds one slot only; keys are served round-robin so none starves.
 */
export class KeyedQueue {
  private readonly pending = new Map<string, Array<() => Promise<void>>>();
  private readonly ready: string[] = [];
  private readonly running = new Set<string>();
  private active = 0;
  private idleWaiters: Array<() => void> = [];

  /**
   * @param concurrency tasks in flight at most, across keys
   * @param onError receives any error a task throws (tasks should handle their own)
   */
  constructor(
    private readonly concurrency: number,
    private readonly onError: (error: unknown, key: string) => void = () => undefined,
  ) {
    if (!(concurrency >= 1)) throw new RangeError(`concurrency must be at least 1, got ${concurrency}`);
  }

  /** Tasks waiting or running. */
  get size(): number {
    let n = this.active;
    for (const q of this.pending.values()) n += q.length;
    return n;
  }

  /** Tasks running now (the rest of {@link size} waits). */
  get inFlight(): number {
    return this.active;
  }

  /** Adds a task for a key; it starts when the key is free and a slot is open. */
  push(key: string, task: () => Promise<void>): void {
    let q = this.pending.get(key);
    if (!q) this.pending.set(key, (q = []));
    q.push(task);
    if (q.length === 1 && !this.running.has(key)) {
      this.ready.push(key);
      this.pump();
    }
  }

  /** Resolves when nothing is waiting or running. */
  onIdle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.active < this.concurrency && this.ready.length > 0) {
      const key = this.ready.shift()!;
      const q = this.pending.get(key)!;
      const task = q.shift()!;
      this.running.add(key);
      this.active++;
      void Promise.resolve()
        .then(task)
        .catch((error) => this.onError(error, key))
        .finally(() => {
          this.active--;
          this.running.delete(key);
          if (q.length > 0) this.ready.push(key);
          else this.pending.delete(key);
          this.pump();
          if (this.size === 0) {
            const waiters = this.idleWaiters;
            this.idleWaiters = [];
            for (const w of waiters) w();
          }
        });
    }
  }
}

/**
 * A counting semaphore with a FIFO wait list: at most `limit` holders at once; waiters are
 * served in arrival order. Bounds LLM calls in flight (`llm.concurrency`).
 */
export class Semaphore {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly limit: number) {
    if (!(limit >= 1)) throw new RangeError(`limit must be at least 1, got ${limit}`);
  }

  /** Holders right now. */
  get inUse(): number {
    return this.active;
  }

  /** Runs `fn` once a slot is free, and frees it when `fn` settles. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      // Hand the slot straight to the next waiter, so a newcomer cannot overtake it.
      if (next) next();
      else this.active--;
    }
  }
}
