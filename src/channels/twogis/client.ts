import type { Logger } from "pino";
import { classifyHttpError, parseRetryAfter, withRetries, type RetryDecision } from "../../lib/retry.js";
import { ChannelError } from "../../errors.js";

/**
 * A review as {@link TwoGisClient.listReviews} returns it, from `result.items[]` of
 * `GET /presence/branch/{branch_id}/reviews` (docs/2gis.md).
 */
export interface TwoGisReview {
  /** 2GIS review id (a string of digits or a uuid; kept as given). */
  id: string;
  /** The branch it was listed under. */
  branchId: string;
  /** Review text; '' when the author only gave stars. */
  text: string;
  /** Stars, 1-5. */
  rating: number;
  /** `dateCreated` as 2GIS sent it (ISO 8601). */
  dateCreated: string;
  /** `dateCreated` as epoch ms UTC. */
  createdMs: number;
  /** `user.name`, or null when absent. */
  authorName: string | null;
  /** `hasCompanyComment`: the business already answered. */
  hasCompanyComment: boolean;
}

/** Options of {@link TwoGisClient}. */
export interface TwoGisClientOptions {
  /** `2gis.api_base_url`, without a trailing slash needed. */
  baseUrl: string;
  login?: string;
  password?: string;
  /** Pre-issued bearer token. */
  token?: string;
  /** Retries per call on 429/5xx/network errors. @defaultValue 3 */
  retries?: number;
  /** First back-off, ms (doubles). @defaultValue 1000 */
  backoffMs?: number;
  /** Longest wait, ms (caps `Retry-After` too). @defaultValue 30000 */
  maxBackoffMs?: number;
  /** Per request, ms. @defaultValue 30000 */
  timeoutMs?: number;
  /** Page size of the review list. @defaultValue 50 */
  pageSize?: number;
  /** Pages read per branch per pass at most (a guard against a server that never ends). @defaultValue 200 */
  maxPages?: number;
  logger?: Logger;
  /** Aborts waits between retries. */
  signal?: AbortSignal;
}

/** Error codes a caller may act on. */
export const DGIS_AUTH = "DGIS_AUTH";

/**
 * HTTP client of the 2GIS business-account API (the API behind account.2gis.com; docs/2gis.md) over
 * Node's fetch. Signs in with login/password (`POST /users/auth` → `result.access_token`) or uses
 * a configured token; on a 401 it signs in again once and repeats the call. Every call goes
 * through {@link withRetries} with {@link classifyHttpError}: 429 waits for `Retry-After`, 5xx and
 * network errors back off, other 4xx fail at once. A 401 after signing in again, or a 403, throws
 * a {@link ChannelError} with code `DGIS_AUTH`: fatal for that bot.
 */
export class TwoGisClient {
  private token?: string;
  /** Sign-in in flight, shared by concurrent calls that hit a 401 together. */
  private signingIn?: Promise<string>;
  private readonly base: string;

  constructor(private readonly options: TwoGisClientOptions) {
    this.base = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
  }

  /** Whether a login and password are configured (so a refused token can be replaced). */
  get canSignIn(): boolean {
    return Boolean(this.options.login && this.options.password);
  }

  /**
   * Makes sure a token is at hand: the configured one, or a fresh sign-in.
   * @throws ChannelError `DGIS_AUTH` when the login is refused; others after retries
   */
  async ensureToken(): Promise<string> {
    if (this.token) return this.token;
    return this.signIn();
  }

  /**
   * Signs in: `POST {api_base_url}/users/auth` with `{login, password}` → `result.access_token`.
   * @throws ChannelError `DGIS_AUTH` on 400/401/403 (wrong login or password)
   */
  signIn(): Promise<string> {
    if (!this.canSignIn) {
      return Promise.reject(
        new ChannelError(DGIS_AUTH, "2GIS refused the configured token and no login/password is set to get a new one", {
          status: 401,
          hint: "renew 2gis.token, or set 2gis.login and 2gis.password",
        }),
      );
    }
    this.signingIn ??= this.retrying("users/auth", classifyHttpError, async () => {
      const body = await this.fetchJson("POST", "/users/auth", { login: this.options.login, password: this.options.password }, undefined);
      const token = (body as { result?: { access_token?: unknown } })?.result?.access_token;
      if (typeof token !== "string" || !token)
        throw new ChannelError("DGIS_BAD_RESPONSE", "2GIS sign-in answered without result.access_token", { status: 200 });
      return token;
    })
      .then((token) => {
        this.token = token;
        this.options.logger?.info("signed in to 2GIS");
        return token;
      })
      .catch((error: unknown) => {
        const status = (error as ChannelError).status;
        if (status === 400 || status === 401 || status === 403) {
          throw new ChannelError(DGIS_AUTH, `2GIS refused the login (${status})`, {
            cause: error,
            status,
            hint: "check 2gis.login and 2gis.password (the account.2gis.com cabinet login)",
          });
        }
        throw error;
      })
      .finally(() => {
        this.signingIn = undefined;
      });
    return this.signingIn;
  }

  /**
   * Lists a branch's reviews without a company answer, newest first, page by page
   * (`GET /presence/branch/{branch_id}/reviews?limit=50&offsetDate=...&withoutAnswer=true`), until
   * a page reaches reviews created before `floorMs`, or a page brings nothing new. The
   * next page's `offsetDate` is the oldest `dateCreated` of the previous one; reviews seen twice
   * (pages that overlap at equal dates) are returned once.
   * @param floorMs epoch ms UTC; older reviews are not returned (and stop the paging)
   * @returns reviews created at or after `floorMs` without `hasCompanyComment`, oldest first;
   *   malformed items are logged and left out
   */
  async listReviews(branchId: string, floorMs = -Infinity): Promise<TwoGisReview[]> {
    const limit = this.options.pageSize ?? 50;
    const seen = new Map<string, TwoGisReview>();
    let offsetDate: string | undefined;
    for (let page = 0; page < (this.options.maxPages ?? 200); page++) {
      const qs = new URLSearchParams({ limit: String(limit), ...(offsetDate ? { offsetDate } : {}), withoutAnswer: "true" });
      const body = await this.call("GET", `/presence/branch/${encodeURIComponent(branchId)}/reviews?${qs}`);
      const items = (body as { result?: { items?: unknown } })?.result?.items;
      if (!Array.isArray(items)) throw new ChannelError("DGIS_BAD_RESPONSE", `2GIS review list of branch ${branchId} has no result.items`, { status: 200 });
      let fresh = 0;
      let oldest: TwoGisReview | undefined;
      for (const raw of items) {
        const review = parseReview(raw, branchId);
        if (!review) {
          this.options.logger?.warn({ branch_id: branchId, item: JSON.stringify(raw).slice(0, 300) }, "2GIS review item not understood; skipped");
          continue;
        }
        if (!oldest || review.createdMs < oldest.createdMs) oldest = review;
        if (seen.has(review.id)) continue;
        fresh++;
        if (review.createdMs >= floorMs && !review.hasCompanyComment) seen.set(review.id, review);
      }
      // A short page is not the end: the server may cap `limit`. Stop on a page with nothing new.
      if (items.length === 0 || fresh === 0 || !oldest || oldest.createdMs < floorMs) break;
      offsetDate = oldest.dateCreated;
    }
    return [...seen.values()].sort((a, b) => a.createdMs - b.createdMs || a.id.localeCompare(b.id));
  }

  /**
   * Posts the official answer to a review: `POST /presence/reviews/{review_id}/comments` with
   * `{text, catalog: "2gis", isOfficialAnswer: true}`.
   * Retried within the call only when 2GIS surely did not take it ({@link classifyAnswerError});
   * any other failure is left to the next pass, whose list (`withoutAnswer=true`) shows whether
   * the answer landed, so a review never gets two official answers.
   * @returns the new comment's id (`result.id`) when 2GIS gives one
   * @throws ChannelError after retries; `DGIS_AUTH` when the token is refused
   */
  async answer(reviewId: string, text: string): Promise<string | null> {
    const body = await this.call(
      "POST",
      `/presence/reviews/${encodeURIComponent(reviewId)}/comments`,
      { text, catalog: "2gis", isOfficialAnswer: true },
      classifyAnswerError,
    );
    const id = (body as { result?: { id?: unknown } })?.result?.id;
    return typeof id === "string" || typeof id === "number" ? String(id) : null;
  }

  /**
   * The business's official answer to a review, if it has one:
   * `GET /presence/reviews/{review_id}/comments?catalog=2gis&limit=200` → `result.items[]` with
   * `id`, `text`, `isOfficialAnswer` (the same path the answer is POSTed to; seen in public
   * clients of the account API). Used to resolve an answer whose recording was cut off.
   * @returns the official comment, or null when the review has none
   * @throws ChannelError after retries; `DGIS_AUTH` when refused; `DGIS_BAD_RESPONSE` when the body has no items
   */
  async officialAnswer(reviewId: string): Promise<{ id: string | null; text: string } | null> {
    const qs = new URLSearchParams({ catalog: "2gis", limit: "200" });
    const body = await this.call("GET", `/presence/reviews/${encodeURIComponent(reviewId)}/comments?${qs}`);
    const result = (body as { result?: unknown })?.result;
    const items = Array.isArray(result) ? result : (result as { items?: unknown } | undefined)?.items;
    if (!Array.isArray(items)) throw new ChannelError("DGIS_BAD_RESPONSE", `2GIS comments of review ${reviewId} have no result.items`, { status: 200 });
    for (const raw of items as Array<Record<string, unknown>>) {
      if (raw?.isOfficialAnswer === true && typeof raw.text === "string")
        return { id: raw.id === undefined || raw.id === null ? null : String(raw.id), text: raw.text };
    }
    return null;
  }

  /** One authorised call with retries and a single sign-in after a 401. */
  private async call(
    method: "GET" | "POST",
    path: string,
    payload?: unknown,
    classify: (error: unknown) => RetryDecision = classifyHttpError,
  ): Promise<unknown> {
    return this.retrying(`${method} ${path.split("?")[0]}`, classify, async () => {
      const token = await this.ensureToken();
      try {
        return await this.fetchJson(method, path, payload, token);
      } catch (error) {
        if ((error as ChannelError).status !== 401) throw asAuthError(error);
        this.options.logger?.info({ path: path.split("?")[0] }, "2GIS answered 401; signing in again");
        // Another call may have signed in meanwhile: only sign in when our token is still current.
        const fresh = this.token === token || this.token === undefined ? await this.signIn() : this.token;
        try {
          return await this.fetchJson(method, path, payload, fresh);
        } catch (again) {
          throw asAuthError(again);
        }
      }
    });
  }

  private retrying<T>(what: string, classify: (error: unknown) => RetryDecision, fn: () => Promise<T>): Promise<T> {
    return withRetries(fn, {
      retries: this.options.retries ?? 3,
      baseMs: this.options.backoffMs ?? 1000,
      maxMs: this.options.maxBackoffMs ?? 30_000,
      classify,
      signal: this.options.signal,
      onRetry: (err, attempt, waitMs) => this.options.logger?.warn({ err, call: what, attempt, wait_ms: Math.round(waitMs) }, "2GIS call failed; retrying"),
    });
  }

  /** fetch + JSON, mapping HTTP and network failures to ChannelError with `status`/`retryAfterS`. */
  private async fetchJson(method: string, path: string, payload: unknown, token: string | undefined): Promise<unknown> {
    const url = this.base + path;
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          accept: "application/json",
          ...(payload !== undefined ? { "content-type": "application/json" } : {}),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body: payload === undefined ? undefined : JSON.stringify(payload),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 30_000),
      });
    } catch (cause) {
      const reason = (cause as { cause?: { code?: string } })?.cause?.code ?? (cause as Error).name ?? "error";
      // Refused connections and failed DNS mean the request never left: safe to repeat any call.
      const code = NOT_SENT.has(reason) ? "DGIS_UNREACHABLE" : "DGIS_NETWORK";
      throw new ChannelError(code, `2GIS ${method} ${path.split("?")[0]}: ${reason} (${(cause as Error).message})`, { cause });
    }
    const text = await res.text().catch(() => "");
    if (!res.ok) {
      const retryMs = parseRetryAfter(res.headers.get("retry-after"));
      throw new ChannelError("DGIS_HTTP", `2GIS ${method} ${path.split("?")[0]}: HTTP ${res.status} ${describeBody(text)}`.trim(), {
        status: res.status,
        retryAfterS: retryMs === undefined ? undefined : retryMs / 1000,
      });
    }
    try {
      return text ? (JSON.parse(text) as unknown) : {};
    } catch (cause) {
      throw new ChannelError("DGIS_BAD_RESPONSE", `2GIS ${method} ${path.split("?")[0]}: answer is not JSON`, { cause, status: res.status });
    }
  }
}

const NOT_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN"]);

/**
 * Retry policy of the answer POST: only failures after which 2GIS surely holds no answer are
 * retried at once: 429 (after `Retry-After`), 502/503/504 from a gateway, and connections that
 * were never made. A 500, a timeout or a dropped connection may hide an answer that was taken;
 * they fail the message, and the next pass answers it only if 2GIS still lists the review as
 * unanswered.
 */
export function classifyAnswerError(error: unknown): RetryDecision {
  const e = error as ChannelError | undefined;
  if (e?.status === 429 || e?.status === 502 || e?.status === 503 || e?.status === 504) return classifyHttpError(error);
  if (e?.status === undefined && e?.code === "DGIS_UNREACHABLE") return { retry: true };
  return { retry: false };
}

/** 401 (after signing in again) and 403 become the fatal `DGIS_AUTH`; anything else stays. */
function asAuthError(error: unknown): unknown {
  const status = (error as ChannelError)?.status;
  if (status !== 401 && status !== 403) return error;
  if ((error as ChannelError).code === DGIS_AUTH) return error;
  return new ChannelError(
    DGIS_AUTH,
    status === 403 ? "2GIS forbids this account to do that (403)" : "2GIS refused the token even after signing in again (401)",
    {
      cause: error,
      status,
      hint:
        status === 403
          ? "check that the account manages these branches (2gis.branch_ids) and may answer reviews"
          : "check 2gis.login / 2gis.password / 2gis.token",
    },
  );
}

/** A short, secret-free description of an error body: the API's message when it has one. */
function describeBody(text: string): string {
  try {
    const b = JSON.parse(text) as { meta?: { errors?: Array<{ message?: string }>; message?: string }; message?: string; error?: string };
    const m = b?.meta?.errors?.[0]?.message ?? b?.meta?.message ?? b?.message ?? b?.error;
    return typeof m === "string" ? m.slice(0, 200) : "";
  } catch {
    return "";
  }
}

/** Validates one `result.items[]` entry; null when required fields are missing or malformed. */
export function parseReview(raw: unknown, branchId: string): TwoGisReview | null {
  if (!raw || typeof raw !== "object") return null;
  const r = raw as { id?: unknown; text?: unknown; rating?: unknown; dateCreated?: unknown; user?: { name?: unknown } | null; hasCompanyComment?: unknown };
  if ((typeof r.id !== "string" && typeof r.id !== "number") || String(r.id) === "") return null;
  const rating = Number(r.rating);
  if (!Number.isFinite(rating)) return null;
  if (typeof r.dateCreated !== "string") return null;
  const createdMs = Date.parse(r.dateCreated);
  if (Number.isNaN(createdMs)) return null;
  return {
    id: String(r.id),
    branchId,
    text: typeof r.text === "string" ? r.text : "",
    rating,
    dateCreated: r.dateCreated,
    createdMs,
    authorName: typeof r.user?.name === "string" && r.user.name ? r.user.name : null,
    hasCompanyComment: r.hasCompanyComment === true,
  };
}
