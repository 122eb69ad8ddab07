import { describeError } from "../errors.js";

/**
 * Whether a channel worker is receiving, as `/healthz` reports it (see {@link ChannelWorker.health}).
 * Times are epoch ms UTC.
 */
export interface ChannelHealth {
  /** False once receiving stopped for good (token refused, worker stopped) or never started. */
  receiving: boolean;
  /** Why it is not receiving, or the last failure; null when all is well. */
  reason: string | null;
  /** When the current run of failed remote calls began (getUpdates, VK API, 2GIS); null when the last call succeeded. */
  failingSinceMs: number | null;
  /** Last successful remote call, or null. */
  lastOkMs: number | null;
}

/**
 * Keeps a worker's {@link ChannelHealth}: the worker reports each remote call's success or
 * failure and when receiving starts or ends. Failures count from the first of a run; one success
 * clears them.
 */
export class HealthTracker {
  private receiving = false;
  private reason: string | null = "not started";
  private failingSinceMs: number | null = null;
  private lastOkMs: number | null = null;

  constructor(private readonly now: () => number = Date.now) {}

  /** Receiving began (poller running, endpoint listening). */
  started(): void {
    this.receiving = true;
    this.reason = null;
  }

  /** Receiving ended for good; `reason` says why (shown by /healthz). */
  stopped(reason: string): void {
    this.receiving = false;
    this.reason = reason;
  }

  /** A remote call succeeded. */
  ok(): void {
    this.lastOkMs = this.now();
    this.failingSinceMs = null;
    if (this.receiving) this.reason = null;
  }

  /** A remote call failed with `error`. */
  failed(error: unknown): void {
    this.failingSinceMs ??= this.now();
    if (this.receiving) this.reason = describeError(error).slice(0, 300);
  }

  /** The current state. */
  get(): ChannelHealth {
    return { receiving: this.receiving, reason: this.reason, failingSinceMs: this.failingSinceMs, lastOkMs: this.lastOkMs };
  }
}

/**
 * Judges a health state: not receiving, or failing for longer than `thresholdMs`, is unhealthy.
 * @returns null when healthy, else the reason
 */
export function unhealthyReason(h: ChannelHealth, nowMs: number, thresholdMs: number): string | null {
  if (!h.receiving) return h.reason ?? "not receiving";
  if (h.failingSinceMs !== null && nowMs - h.failingSinceMs > thresholdMs) {
    return `remote calls failing for ${Math.round((nowMs - h.failingSinceMs) / 1000)} s${h.reason ? `: ${h.reason}` : ""}`;
  }
  return null;
}
