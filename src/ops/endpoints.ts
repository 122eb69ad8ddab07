import { unhealthyReason, type ChannelHealth } from "../channels/health.js";
import { sendJson, type HttpServer } from "../http/server.js";
import type { BotsMetrics } from "./metrics.js";

/** A started bot as `/healthz` sees it. */
export interface HealthSource {
  name: string;
  channel: string;
  /** The worker's state; undefined for a worker without `health()` (healthy while started). */
  health(): ChannelHealth | undefined;
}

/** Options of {@link mountOpsRoutes}. */
export interface OpsRoutesOptions {
  metrics?: BotsMetrics;
  /** The started bots, or undefined while they are still starting (`/readyz` 503). */
  bots(): HealthSource[] | undefined;
  /** How long remote calls may keep failing before a bot counts as not receiving, ms. @defaultValue 120000 */
  thresholdMs?: number;
  /** Values scrubbed from reasons (tokens that an error message might carry). */
  secrets?: string[];
  now?: () => number;
}

/**
 * Mounts the operations endpoints on the process's HTTP server:
 * - `GET /metrics`: Prometheus text format (when `metrics` is given);
 * - `GET /healthz`: 200 `{status:"ok", bots:[...]}` when every started bot is receiving; 503
 *   `{status:"failing", failing:[{bot, channel, reason}], bots:[...]}` otherwise (also while
 *   starting);
 * - `GET /readyz`: 200 `{status:"ready"}` once the bots are started, 503 before.
 */
export function mountOpsRoutes(server: HttpServer, options: OpsRoutesOptions): void {
  const now = options.now ?? Date.now;
  const threshold = options.thresholdMs ?? 120_000;
  const scrub = (s: string) => (options.secrets ?? []).reduce((acc, secret) => (secret.length >= 6 ? acc.split(secret).join("[REDACTED]") : acc), s);
  if (options.metrics) {
    const metrics = options.metrics;
    server.route("GET", "/metrics", async (_req, res) => {
      const { contentType, body } = await metrics.render();
      res.writeHead(200, { "content-type": contentType, "cache-control": "no-store" }).end(body);
    });
  }
  server.route("GET", "/readyz", (_req, res) => {
    const bots = options.bots();
    sendJson(res, bots ? 200 : 503, bots ? { status: "ready", bots: bots.map((b) => b.name) } : { status: "starting" });
  });
  server.route("GET", "/healthz", (_req, res) => {
    const bots = options.bots();
    if (!bots) return sendJson(res, 503, { status: "starting", failing: [] });
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
    const failing = rows.filter((r) => !r.receiving).map((r) => ({ bot: r.bot, channel: r.channel, reason: r.reason }));
    sendJson(res, failing.length ? 503 : 200, { status: failing.length ? "failing" : "ok", failing, bots: rows });
  });
}
