import type http from "node:http";
import { closeServer, listenLocal, originOf } from "./http.js";

/** A review held by {@link FakeTwoGis}. */
export interface FakeReview {
  id: string;
  branchId: string;
  text: string;
  rating: number;
  /** ISO 8601 UTC. */
  dateCreated: string;
  userName: string | null;
  /** Comments posted to it (official answers included). */
  comments: Array<{ id: string; text: string; isOfficialAnswer: boolean; catalog: string }>;
}

/** One posted answer as the server received it. */
export interface PostedAnswer {
  reviewId: string;
  body: { text?: unknown; catalog?: unknown; isOfficialAnswer?: unknown };
  authorization: string | undefined;
}

/** One request the server saw. */
export interface SeenRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  authorization: string | undefined;
  status: number;
  at: number;
}

/**
 * A local 2GIS business-account API for tests, speaking the JSON shapes of docs/2gis.md:
 * `POST /users/auth` → `{result: {access_token}}`; `GET /presence/branch/{id}/reviews` (newest
 * first; `offsetDate` returns reviews created at or before it; `withoutAnswer=true` leaves out
 * reviews with a company comment) → `{result: {items: [{id, text, rating, dateCreated, user:
 * {name}, hasCompanyComment}]}}`; `POST /presence/reviews/{id}/comments` records the answer and
 * `GET` on the same path lists the review's comments (`result.items[]` with `isOfficialAnswer`).
 * Errors can be injected: expired tokens (401 once), 429 with `Retry-After`, 500 on a chosen
 * review's answer, 403.
 */
export class FakeTwoGis {
  login = "owner@example.com";
  password = "2gis-pass-123";
  readonly reviews: FakeReview[] = [];
  readonly answers: PostedAnswer[] = [];
  readonly requests: SeenRequest[] = [];
  /** Successful sign-ins. */
  signIns = 0;
  /** Largest page the server returns, whatever `limit` asks. */
  maxPageSize = 50;
  /** Delay before answering a posted comment, ms. */
  answerLatencyMs = 0;
  /** Next requests (other than sign-in) answered 429 with this Retry-After (seconds). */
  rateLimit: { count: number; retryAfterS: number } = { count: 0, retryAfterS: 1 };
  /** Review ids whose answer POST fails with {@link failStatus}, with how many times left (Infinity = always). */
  readonly failAnswers = new Map<string, number>();
  /** Status of an injected answer failure. @defaultValue 500 */
  failStatus = 500;
  /** Review ids whose next answer is stored and then answered with HTTP 500 (a lost success). */
  readonly storeThenFail = new Set<string>();
  /** Raw items added to every list page (malformed input from the channel). */
  readonly junkItems: unknown[] = [];
  /** Answer 403 to every authorised call. */
  forbidden = false;
  private readonly tokens = new Set<string>();
  private nextId = 1;
  private server?: http.Server;

  async start(): Promise<string> {
    this.server = await listenLocal((req, res) => void this.handle(req, res));
    return this.url;
  }

  /** The `api_base_url` to configure. */
  get url(): string {
    return `${originOf(this.server!)}/api/1.0`;
  }

  async stop(): Promise<void> {
    await closeServer(this.server);
  }

  /** Adds a review; `dateCreated` defaults to 2025-01-01T00:00:NN UTC, one second apart in creation order. */
  addReview(branchId: string, r: { id?: string; text?: string; rating?: number; userName?: string | null; dateCreated?: string }): FakeReview {
    const n = this.nextId++;
    const review: FakeReview = {
      id: r.id ?? String(1_000_000 + n),
      branchId,
      text: r.text ?? `review ${n}`,
      rating: r.rating ?? 5,
      dateCreated: r.dateCreated ?? new Date(Date.UTC(2025, 0, 1, 0, 0, n)).toISOString(),
      userName: r.userName === undefined ? `Author ${n}` : r.userName,
      comments: [],
    };
    this.reviews.push(review);
    return review;
  }

  /** Revokes every issued token: the next authorised call gets 401 (an expired token). */
  expireTokens(): void {
    this.tokens.clear();
  }

  /** Issues a token without signing in (a pre-configured `2gis.token`). */
  issueToken(): string {
    const t = `tok-${Math.random().toString(36).slice(2)}`;
    this.tokens.add(t);
    return t;
  }

  /** Official answers posted to a review. */
  answersTo(reviewId: string): PostedAnswer[] {
    return this.answers.filter((a) => a.reviewId === reviewId);
  }

  private send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const url = new URL(req.url ?? "/", "http://x");
    const path = url.pathname.replace(/^\/api\/1\.0/, "");
    const seen: SeenRequest = {
      method: req.method ?? "",
      path,
      query: Object.fromEntries(url.searchParams),
      authorization: req.headers.authorization,
      status: 0,
      at: Date.now(),
    };
    this.requests.push(seen);
    const reply = (status: number, body: unknown, headers?: Record<string, string>) => {
      seen.status = status;
      this.send(res, status, body, headers);
    };
    let body: Record<string, unknown> = {};
    try {
      body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>) : {};
    } catch {
      return reply(400, { meta: { code: 400, errors: [{ message: "bad json" }] } });
    }

    if (req.method === "POST" && path === "/users/auth") {
      if (body.login !== this.login || body.password !== this.password)
        return reply(401, { meta: { code: 401, errors: [{ message: "Invalid login or password" }] } });
      this.signIns++;
      return reply(200, { meta: { code: 200 }, result: { access_token: this.issueToken(), expires_in: 3600 } });
    }

    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    if (!token || !this.tokens.has(token)) return reply(401, { meta: { code: 401, errors: [{ message: "Token expired" }] } });
    if (this.forbidden) return reply(403, { meta: { code: 403, errors: [{ message: "Access denied" }] } });
    if (this.rateLimit.count > 0) {
      this.rateLimit.count--;
      return reply(429, { meta: { code: 429, errors: [{ message: "Too many requests" }] } }, { "retry-after": String(this.rateLimit.retryAfterS) });
    }

    const list = /^\/presence\/branch\/([^/]+)\/reviews$/.exec(path);
    if (req.method === "GET" && list) {
      const branchId = decodeURIComponent(list[1]!);
      const limit = Math.min(Number(url.searchParams.get("limit") ?? 50) || 50, this.maxPageSize);
      const offset = url.searchParams.get("offsetDate");
      const withoutAnswer = url.searchParams.get("withoutAnswer") === "true";
      const items = this.reviews
        .filter((r) => r.branchId === branchId)
        .filter((r) => !withoutAnswer || r.comments.length === 0)
        .filter((r) => !offset || Date.parse(r.dateCreated) <= Date.parse(offset))
        .sort((a, b) => Date.parse(b.dateCreated) - Date.parse(a.dateCreated))
        .slice(0, limit)
        .map((r) => ({
          id: r.id,
          text: r.text,
          rating: r.rating,
          dateCreated: r.dateCreated,
          user: r.userName === null ? null : { name: r.userName },
          hasCompanyComment: r.comments.length > 0,
        }));
      const page = [...items, ...(items.length ? this.junkItems : [])];
      return reply(200, { meta: { code: 200 }, result: { items: page, total: page.length } });
    }

    const answer = /^\/presence\/reviews\/([^/]+)\/comments$/.exec(path);
    if (req.method === "GET" && answer) {
      const review = this.reviews.find((r) => r.id === decodeURIComponent(answer[1]!));
      if (!review) return reply(404, { meta: { code: 404, errors: [{ message: "Review not found" }] } });
      return reply(200, {
        meta: { code: 200 },
        result: { items: review.comments.map((c) => ({ id: c.id, text: c.text, isOfficialAnswer: c.isOfficialAnswer })) },
      });
    }
    if (req.method === "POST" && answer) {
      const reviewId = decodeURIComponent(answer[1]!);
      const review = this.reviews.find((r) => r.id === reviewId);
      if (!review) return reply(404, { meta: { code: 404, errors: [{ message: "Review not found" }] } });
      const left = this.failAnswers.get(reviewId) ?? 0;
      if (left > 0) {
        this.failAnswers.set(reviewId, left - 1);
        return reply(this.failStatus, {
          meta: { code: this.failStatus, errors: [{ message: this.failStatus === 500 ? "Internal error" : "Service unavailable" }] },
        });
      }
      if (typeof body.text !== "string" || !body.text) return reply(400, { meta: { code: 400, errors: [{ message: "text is required" }] } });
      if (this.answerLatencyMs) await new Promise((r) => setTimeout(r, this.answerLatencyMs));
      this.answers.push({ reviewId, body, authorization: req.headers.authorization });
      const id = `c${this.answers.length}`;
      review.comments.push({ id, text: body.text, isOfficialAnswer: body.isOfficialAnswer === true, catalog: String(body.catalog) });
      if (this.storeThenFail.delete(reviewId)) return reply(500, { meta: { code: 500, errors: [{ message: "Internal error" }] } });
      return reply(200, { meta: { code: 200 }, result: { id } });
    }
    return reply(404, { meta: { code: 404, errors: [{ message: "Not found" }] } });
  }
}
