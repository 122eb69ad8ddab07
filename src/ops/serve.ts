import type { BotConfig } from "../config/schema.js";
import { UsageError } from "../errors.js";
import { HttpServer, parseHttpPort } from "../http/server.js";
import type { Logging } from "../logging.js";
import { secretsOf, type RunningBots } from "../runner.js";
import type { Store } from "../storage/index.js";
import { mountOpsRoutes } from "./endpoints.js";
import { createMetrics, type BotsMetrics, type PipelineHooks } from "./metrics.js";

/** Options of `bots start` as commander parsed them. */
export interface StartCommandOptions {
  drainTimeout: string;
  /** `--http-port`: a port, 0 for any free one, `off` for none. @defaultValue "8080" */
  httpPort?: string;
  /** `--http-host`. @defaultValue "127.0.0.1" */
  httpHost?: string;
  /** `--health-threshold`, seconds. @defaultValue "120" */
  healthThreshold?: string;
}

/** The HTTP settings of `bots start`, or null with `--http-port off`. */
export interface HttpSettings {
  port: number;
  host: string;
  thresholdMs: number;
}

/**
 * Reads `--http-port`, `--http-host` and `--health-threshold`.
 * @throws UsageError for a malformed port or threshold
 */
export function parseHttpOptions(opts: StartCommandOptions): HttpSettings | null {
  let port: number | null;
  try {
    port = parseHttpPort(opts.httpPort ?? "8080");
  } catch (error) {
    throw new UsageError("HTTP_PORT_INVALID", (error as Error).message);
  }
  const threshold = Number(opts.healthThreshold ?? "120");
  if (!Number.isFinite(threshold) || threshold <= 0) throw new UsageError("HEALTH_THRESHOLD_INVALID", `--health-threshold must be seconds > 0, got '${opts.healthThreshold}'`);
  return port === null ? null : { port, host: opts.httpHost ?? "127.0.0.1", thresholdMs: threshold * 1000 };
}

/** True for a bot whose updates are pushed to the HTTP ingress: Telegram webhook, VK Callback API. */
export function receivesPushed(b: BotConfig): boolean {
  return (b.channel === "tg" && b.tg?.mode === "webhook") || (b.channel === "vk" && b.vk?.mode === "callback");
}

/**
 * Refuses `--http-port off` when a selected bot receives pushed updates (Telegram webhook, VK
 * callback): they arrive on that server at `/tg/<bot>` and `/vk/<bot>`.
 * @throws UsageError naming the bots and the way out
 */
export function checkIngress(bots: BotConfig[], http: HttpSettings | null): void {
  const pushed = bots.filter(receivesPushed);
  if (http || !pushed.length) return;
  throw new UsageError("HTTP_NEEDED", `--http-port off, but ${pushed.map((b) => b.name).join(", ")} receive${pushed.length === 1 ? "s" : ""} updates on the HTTP server (Telegram webhook at /tg/<bot>, VK callback at /vk/<bot>)`, { hint: "give --http-port a port (default 8080), or switch those bots to tg.mode: polling / vk.mode: longpoll" });
}

/** The HTTP server of `bots start` with its metrics. */
export interface OpsServer {
  server: HttpServer;
  metrics: BotsMetrics;
  hooks: PipelineHooks;
}

/**
 * Starts the process's HTTP server on `port` with `/metrics`, `/healthz` and `/readyz`, and logs
 * the bound port.
 * @throws UsageError when the port is taken
 */
export async function startOpsServer(o: HttpSettings & { bots: BotConfig[]; store: Store; logging: Logging; running: () => RunningBots | undefined }): Promise<OpsServer> {
  const metrics = await createMetrics({ bots: o.bots, store: o.store });
  const server = new HttpServer(o.logging.root);
  mountOpsRoutes(server, {
    metrics,
    thresholdMs: o.thresholdMs,
    secrets: secretsOf(o.bots),
    bots: () => o.running()?.bots.map((r) => ({ name: r.config.name, channel: r.config.channel, health: () => r.worker.health?.() })),
  });
  try {
    await server.listen({ port: o.port, host: o.host });
  } catch (error) {
    throw new UsageError("HTTP_LISTEN", `cannot listen on ${o.host}:${o.port}: ${(error as Error).message}`, { cause: error, hint: "pass another --http-port, 0 for any free port, or off" });
  }
  o.logging.root.info({ http_port: server.port, host: o.host }, "HTTP server listening (/metrics, /healthz, /readyz)");
  return { server, metrics, hooks: metrics.hooks };
}
