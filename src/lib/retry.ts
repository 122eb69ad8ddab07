/**
 * One retry policy for every remote API (OpenAI, Telegram, VK, 2GIS): classify first, then auth
 * and bad requests fail at once, 429 waits for the server's `retry_after`, and
 * network errors and 5xx back off exponentially with a cap.
 */

/** What to do about one failure. */
export type RetryDecision = { retry: false } | { retry: true; afterMs?: number };

/** Options of {@link withRetries}. */
export interface RetryOptions {
  /** Retries after the first attempt. @defaultValue 3 */
  retries?: number;
  /** First back-off, ms; doubles each time. @defaultValue 500 */
  baseMs?: number;
  /** Longest single wait, ms (also caps a server's retry_after). @defaultValue 30000 */
  maxMs?: number;
  /** Decides per error; defaults to {@link classifyHttpError}. */
  classify?: (error: unknown) => RetryDecision;
  /** Called before each wait (for logging). */
  onRetry?: (error: unknown, attempt: number, waitMs: number) => void;
  /** Aborts waiting between attempts. */
  signal?: AbortSignal;
}

/**
 * Classifies an error by HTTP-like status: 429 → retry after `retryAfterS`; 408, 409 and 5xx →
 * back off; other 4xx (400, 401, 403, 404) → fatal; no status (network, timeout) → back off.
 * Reads `status` and `retryAfterS`/`retryAfterMs` fields of the error.
 */
export function classifyHttpError(error: unknown): RetryDecision {
  const e = error as { status?: number; retryAfterS?: number; retryAfterMs?: number; name?: string } | undefined;
  if (e?.name === "AbortError") return { retry: false };
  const status = e?.status;
  if (status === undefined) return { retry: true };
  if (status === 429) {
    const afterMs = e?.retryAfterMs ?? (e?.retryAfterS !== undefined ? e.retryAfterS * 1000 : undefined);
    return { retry: true, afterMs };
  }
  if (status === 408 || status === 409 || status >= 500) return { retry: true };
  return { retry: false };
}

/** Parses an HTTP `Retry-After` header (seconds or HTTP date) into ms. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const s = Number(value);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/**
 * Runs `fn` until it succeeds, the policy says stop, or retries run out.
 * @throws the last error
 */
export async function withRetries<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const retries = options.retries ?? 3;
  const base = options.baseMs ?? 500;
  const max = options.maxMs ?? 30_000;
  const classify = options.classify ?? classifyHttpError;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (error) {
      const decision = classify(error);
      if (!decision.retry || attempt >= retries || options.signal?.aborted) throw error;
      const backoff = Math.min(max, base * 2 ** attempt);
      // Jitter keeps many clients that failed together from retrying together.
      const waitMs = Math.min(max, decision.afterMs ?? backoff * (0.8 + Math.random() * 0.4));
      options.onRetry?.(error, attempt + 1, waitMs);
      await sleep(waitMs, options.signal);
    }
  }
}

/** setTimeout as a promise; resolves early (without error) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
