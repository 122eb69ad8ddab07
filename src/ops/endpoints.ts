import { createHash, timingSafeEqual } from "node:crypto";
import type http from "node:http";
import { unhealthyReason, type ChannelHealth } from "../channels/health.js";
import { sendJson, type HttpServer } from "../http/server.js";
import type { DatabaseHealthState } from "./db-health.js";
import type { BotsMetrics } from "./metrics.js";

/** A started bot as `/healthz` sees it. */
export interface HealthSource {
  name: string;
  channel: string;
  /** The worker's state; undefined for a worker without `health()` (healthy while started). */
  health(): ChannelHealth | undefined;
}

/** A bot this instance should run and nobody runs, as `/readyz` reports it. */
export interface UnownedBot {
  name: string;
  channel: string;
}

/** Options of {@link mountOpsRoutes}. */
export interface OpsRoutesOptions {
  metrics?: BotsMetrics;
  /** The started bots, or undefined while they are still starting (`/readyz` 503). */
  bots(): HealthSource[] | undefined;
  /** Whether writes reach the database ({@link DatabaseHealth.state}); absent = not judged. */
  database?(): DatabaseHealthState;
  /** Bots of this instance's selection that no live instance runs (`Ownership.unownedBots`); absent = none. */
  unowned?(): UnownedBot[];
  /** How long remote calls may keep failing before a bot counts as not receiving, ms. @defaultValue 120000 */
  thresholdMs?: number;
  /** Values scrubbed from reasons (tokens that an error message might carry). */
  secrets?: string[];
  /**
   * `--metrics-token`: when set, `/metrics` answers 401 without `Authorization: Bearer <token>`,
   * and `/healthz` / `/readyz` without it answer the status code and `{status}` only.
   */
  token?: string;
  now?: () => number;
}

/** One reason in a `failing` list: a component of the process (`database`) or a bot. */
export type FailingItem = { component: "database"; reason: string } | { bot: string; channel: string; reason: string | null };

/**
 * Mounts the operations endpoints on the process's HTTP server:
 * - `GET /metrics`: Prometheus text format (when `metrics` is given); 401 without the token when
 *   one is set;
 * - `GET /healthz`: 200 `{status:"ok", failing:[], database:{...}, bots:[...]}` while writes reach
 *   the database and every started bot is receiving; 503 `{status:"failing", failing:[{component:
 *   "database", reason} | {bot, channel, reason}], database, bots}` otherwise; 503
 *   `{status:"starting", failing}` while the bots start;
 * - `GET /readyz`: 200 `{status:"ready", bots:[names run here]}` once started, while writes reach
 *   the database and every bot of the selection runs somewhere (here or on a live peer); 503
 *   `{status:"starting"|"not_ready", failing:[...]}` otherwise.
 * With a token set and none (or a wrong one) given, `/healthz` and `/readyz` answer `{status}` only.
 */
export function mountOpsRoutes(server: HttpServer, options: OpsRoutesOptions): void {
  const now = options.now ?? Date.now;
  const threshold = options.thresholdMs ?? 120_000;
  const scrub = (s: string) => (options.secrets ?? []).reduce((acc, secret) => (secret.length >= 6 ? acc.split(secret).join("[REDACTED]") : acc), s);
  const authorized = tokenCheck(options.token);
  /** Sends `body`, or only its status when a token is set and the request does not carry it. */
  const answer = (req: http.IncomingMessage, res: http.ServerResponse, code: number, body: { status: string } & Record<string, unknown>) =>
    sendJson(res, code, authorized(req) ? body : { status: body.status });
  const databaseFailing = (): { item?: FailingItem; state?: ReturnType<typeof databaseBody> } => {
    const s = options.database?.();
    if (!s) return {};
    return { state: databaseBody(s), item: s.up ? undefined : { component: "database", reason: scrub(s.reason ?? "writes failing") } };
  };
  if (options.metrics) {
    const metrics = options.metrics;
    server.route("GET", "/metrics", async (req, res) => {
      if (!authorized(req))
        return void res
          .writeHead(401, { "content-type": "text/plain; charset=utf-8", "www-authenticate": 'Bearer realm="metrics"', "cache-control": "no-store" })
          .end("unauthorized: pass Authorization: Bearer <metrics token>\n");
      const { contentType, body } = await metrics.render();
      res.writeHead(200, { "content-type": contentType, "cache-control": "no-store" }).end(body);
    });
  }
  server.route("GET", "/readyz", (req, res) => {
    const bots = options.bots();
    const db = databaseFailing();
    const failing: FailingItem[] = db.item ? [db.item] : [];
    if (!bots) return answer(req, res, 503, { status: "starting", failing });
    for (const b of options.unowned?.() ?? []) failing.push({ bot: b.name, channel: b.channel, reason: "no live instance runs it" });
    if (failing.length) return answer(req, res, 503, { status: "not_ready", failing, bots: bots.map((b) => b.name) });
    answer(req, res, 200, { status: "ready", bots: bots.map((b) => b.name) });
  });
  server.route("GET", "/healthz", (req, res) => {
    const bots = options.bots();
    const db = databaseFailing();
    const failing: FailingItem[] = db.item ? [db.item] : [];
    if (!bots) return answer(req, res, 503, { status: "starting", failing, ...(db.state && { database: db.state }) });
    const t = now();
    const rows = bots.map((b) => {
      const h = b.health();
      const reason = h ? unhealthyReason(h, t, threshold) : null;
      return {
        bot: b.name,
        channel: b.channel,
        receiving: reason === null,
        reason: reason === null ? null : scrub(reason),
        last_ok_at: h?.lastOkMs ? new Date(h.lastOkMs).toISOString() : null,
        failing_since: h?.failingSinceMs ? new Date(h.failingSinceMs).toISOString() : null,
      };
    });
    for (const r of rows) if (!r.receiving) failing.push({ bot: r.bot, channel: r.channel, reason: r.reason });
    answer(req, res, failing.length ? 503 : 200, { status: failing.length ? "failing" : "ok", failing, ...(db.state && { database: db.state }), bots: rows });
  });
}

/** The `database` object of `/healthz`: `{up, reason, last_write_ok_at, failing_since}` (ISO 8601 UTC or null). */
function databaseBody(s: DatabaseHealthState) {
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return { up: s.up, reason: s.reason, last_write_ok_at: iso(s.lastWriteOkMs), failing_since: iso(s.failingSinceMs) };
}

/**
 * A check of `Authorization: Bearer <token>` in constant time (both sides hashed to 32 bytes, so
 * neither the length nor a prefix leaks). No token configured: every request passes.
 */
export function tokenCheck(token: string | undefined): (req: http.IncomingMessage) => boolean {
  if (!token) return () => true;
  const want = createHash("sha256").update(token).digest();
  return (req) => {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? "");
    const got = createHash("sha256")
      .update(m?.[1] ?? "")
      .digest();
    return timingSafeEqual(got, want) && m !== null;
  };
}
