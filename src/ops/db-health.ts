import { describeError } from "../errors.js";
import { isBusy } from "../storage/db.js";
import type { QueryEvent, QueryObserver } from "../storage/observe.js";

/** Whether this process can record, as `/healthz` and `/readyz` report it; times are epoch ms UTC. */
export interface DatabaseHealthState {
  /** False from the first failed write (or failed connection) until a write succeeds again, or while a write waits past the stall limit. */
  up: boolean;
  /** Why it is down (the driver's error, or the stalled write), else null. */
  reason: string | null;
  /** First failure of the current run, or null while up. */
  failingSinceMs: number | null;
  /** Last write that the database confirmed, or null. */
  lastWriteOkMs: number | null;
}

/** Options of {@link DatabaseHealth}. */
export interface DatabaseHealthOptions {
  observer: QueryObserver;
  /**
   * A cheap real write (the instance heartbeat), run when no write succeeded for `idleMs`, and
   * every `retryMs` while down, so the state follows the database when nothing else writes.
   * Its outcome reaches the state through the observer like any other write.
   */
  probe?: () => Promise<unknown>;
  /** No confirmed write for this long: probe, ms. @defaultValue 10000 */
  idleMs?: number;
  /** While down, probe this often, ms. @defaultValue 2000 */
  retryMs?: number;
  /** A write unanswered for this long counts as failing (a database that hangs instead of refusing), ms. @defaultValue 30000 */
  stallMs?: number;
  /** Called for every failed operation except expected ones (constraint violations), for `bots_storage_errors_total`. */
  onError?(error: unknown): void;
  now?: () => number;
}

/** Driver codes that mean the database answered and refused one row on purpose (a duplicate, a dangling key): the write path works. */
const EXPECTED = /^(SQLITE_CONSTRAINT|ER_DUP_|ER_NO_REFERENCED_ROW|ER_ROW_IS_REFERENCED)/;

/**
 * Tracks whether writes reach the database (docs/durability.md): every write's outcome at the driver,
 * failed pool connections, writes left unanswered past `stallMs`, and a probe write when idle.
 * Busy/deadlock errors change nothing (the caller retries them); constraint violations count as
 * success (the database answered).
 */
export class DatabaseHealth {
  private failingSinceMs: number | null = null;
  private reason: string | null = null;
  private lastWriteOkMs: number | null = null;
  private lastProbeMs = 0;
  private probing = false;
  private timer?: NodeJS.Timeout;
  private unsubscribe?: () => void;
  private readonly now: () => number;
  /** Until a first confirmed write, idleness counts from here, epoch ms. */
  private readonly startedMs: number;

  constructor(private readonly o: DatabaseHealthOptions) {
    this.now = o.now ?? Date.now;
    this.startedMs = this.now();
  }

  /** Subscribes to the observer and starts the probe timer (unref'd). */
  start(): this {
    this.unsubscribe = this.o.observer.subscribe((e) => this.record(e));
    const every = Math.max(100, Math.min(this.o.retryMs ?? 2000, 1000));
    this.timer = setInterval(() => this.maybeProbe(), every);
    this.timer.unref();
    return this;
  }

  /** Stops the timer and the subscription. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.unsubscribe?.();
  }

  /** Sets (or replaces) the probe, e.g. once the instance is registered. */
  setProbe(probe: () => Promise<unknown>): void {
    this.o.probe = probe;
  }

  /** Takes one operation's outcome (the observer calls it once {@link start} subscribed). */
  record(e: QueryEvent): void {
    if (e.ok) {
      if (e.kind !== "write") return;
      this.lastWriteOkMs = e.endedMs;
      this.failingSinceMs = null;
      this.reason = null;
      return;
    }
    const code = (e.error as { code?: unknown } | undefined)?.code;
    if (typeof code === "string" && EXPECTED.test(code)) {
      if (e.kind === "write") {
        this.lastWriteOkMs = e.endedMs;
        this.failingSinceMs = null;
        this.reason = null;
      }
      return;
    }
    this.o.onError?.(e.error);
    if (isBusy(e.error) || e.kind === "read") return;
    // A failure older than the last confirmed write (a slow statement that began before) does not undo it.
    if (this.lastWriteOkMs !== null && e.startedMs < this.lastWriteOkMs) return;
    this.failingSinceMs ??= e.endedMs;
    const what = e.kind === "connect" ? "cannot connect" : "write failed";
    this.reason = `${what}${typeof code === "string" ? ` (${code})` : ""}: ${describeError(e.error).slice(0, 300) || "no message"}`;
  }

  /** The current state (a write waiting past `stallMs` makes it down). */
  state(): DatabaseHealthState {
    const t = this.now();
    const oldest = this.o.observer.oldestPendingWriteMs();
    const stall = this.o.stallMs ?? 30_000;
    if (this.failingSinceMs === null && oldest !== undefined && t - oldest > stall) {
      return {
        up: false,
        reason: `a write has waited ${Math.round((t - oldest) / 1000)} s for the database`,
        failingSinceMs: oldest + stall,
        lastWriteOkMs: this.lastWriteOkMs,
      };
    }
    return { up: this.failingSinceMs === null, reason: this.reason, failingSinceMs: this.failingSinceMs, lastWriteOkMs: this.lastWriteOkMs };
  }

  private maybeProbe(): void {
    const probe = this.o.probe;
    if (!probe || this.probing) return;
    const t = this.now();
    const down = this.failingSinceMs !== null;
    const idle = t - (this.lastWriteOkMs ?? this.startedMs) >= (this.o.idleMs ?? 10_000);
    const due = t - this.lastProbeMs >= (down ? (this.o.retryMs ?? 2000) : (this.o.idleMs ?? 10_000));
    if (!(down || idle) || !due) return;
    this.lastProbeMs = t;
    this.probing = true;
    // The outcome reaches record() through the observer; a throw here is that same failure.
    void probe()
      .catch(() => undefined)
      .finally(() => (this.probing = false));
  }
}
