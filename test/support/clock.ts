/**
 * A clock tests move by hand, for schedules and retry loops: `now()` returns the set time and
 * `sleep(ms)` resolves only when {@link advance} moves the time past its deadline (or its
 * signal aborts). Pass `now` and `sleep` where the code takes them.
 */
export class ManualClock {
  private waiters: Array<{ at: number; resolve: () => void }> = [];

  constructor(private t: number) {}

  readonly now = (): number => this.t;

  readonly sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
    new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const w = { at: this.t + ms, resolve };
      this.waiters.push(w);
      signal?.addEventListener(
        "abort",
        () => {
          this.waiters = this.waiters.filter((x) => x !== w);
          resolve();
        },
        { once: true },
      );
    });

  /** Sleeps currently pending. */
  get pending(): number {
    return this.waiters.length;
  }

  /** Moves the time forward and wakes every sleep whose deadline passed. */
  advance(ms: number): void {
    this.t += ms;
    const due = this.waiters.filter((w) => w.at <= this.t);
    this.waiters = this.waiters.filter((w) => w.at > this.t);
    for (const w of due) w.resolve();
  }
}
