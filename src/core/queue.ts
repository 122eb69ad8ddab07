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
