import { receivesPushed } from "../channels/index.js";
import type { ChannelHealth } from "../channels/health.js";
import type { BotConfig } from "../config/schema.js";
import { UsageError } from "../errors.js";
import { HttpServer, parseHttpPort } from "../http/server.js";
import type { Logging } from "../logging.js";
import { botSecrets } from "../secrets.js";
import type { Store } from "../storage/index.js";
import { DatabaseHealth } from "./db-health.js";
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
  /** `--metrics-token`; env `BOTS_METRICS_TOKEN` when absent. */
  metricsToken?: string;
}

/** The HTTP settings of `bots start`, or null with `--http-port off`. */
export interface HttpSettings {
  port: number;
  host: string;
  thresholdMs: number;
  /** Bearer token guarding `/metrics` and the details of `/healthz` and `/readyz`; undefined = open. */
  token?: string;
}

/** Shortest `--metrics-token` accepted, characters. */
export const MIN_METRICS_TOKEN = 16;

/**
 * Reads `--http-port`, `--http-host`, `--health-threshold` and `--metrics-token` (else `env.BOTS_METRICS_TOKEN`).
 * @throws UsageError for a malformed port or threshold, or a token shorter than 16 characters or with spaces
 */
export function parseHttpOptions(opts: StartCommandOptions, env: Record<string, string | undefined> = {}): HttpSettings | null {
  let port: number | null;
  try {
    port = parseHttpPort(opts.httpPort ?? "8080");
  } catch (error) {
    throw new UsageError("HTTP_PORT_INVALID", (error as Error).message);
  }
  const threshold = Number(opts.healthThreshold ?? "120");
  if (!Number.isFinite(threshold) || threshold <= 0)
    throw new UsageError("HEALTH_THRESHOLD_INVALID", `--health-threshold must be seconds > 0, got '${opts.healthThreshold}'`);
  const token = opts.metricsToken ?? (env.BOTS_METRICS_TOKEN || undefined);
  if (token !== undefined && (token.length < MIN_METRICS_TOKEN || /\s/.test(token))) {
    throw new UsageError("METRICS_TOKEN_INVALID", `--metrics-token (or BOTS_METRICS_TOKEN) must be at least ${MIN_METRICS_TOKEN} characters without spaces`, {
      hint: "generate one: openssl rand -hex 24",
    });
  }
  return port === null ? null : { port, host: opts.httpHost ?? "127.0.0.1", thresholdMs: threshold * 1000, token };
}

/** True for a host that only this machine reaches: `localhost`, 127.0.0.0/8, `::1` (also bracketed or IPv4-mapped). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^(::ffff:)?127(\.\d{1,3}){3}$/.test(h);
}

/**
 * Refuses `--http-port off` when a selected bot receives pushed updates (Telegram webhook, VK
 * callback): they arrive on that server at `/tg/<bot>` and `/vk/<bot>`.
 * @throws UsageError naming the bots and the way out
 */
export function checkIngress(bots: BotConfig[], http: HttpSettings | null): void {
  const pushed = bots.filter(receivesPushed);
  if (http || !pushed.length) return;
  throw new UsageError(
    "HTTP_NEEDED",
    `--http-port off, but ${pushed.map((b) => b.name).join(", ")} receive${pushed.length === 1 ? "s" : ""} updates on the HTTP server (Telegram webhook at /tg/<bot>, VK callback at /vk/<bot>)`,
    { hint: "give --http-port a port (default 8080), or switch those bots to tg.mode: polling / vk.mode: longpoll" },
  );
}

/**
 * What the ops server reads of the running bots (src/runner.ts `RunningBots` has this shape): the
 * owned bots with their worker's health, and the ownership for the heartbeat probe and `/readyz`.
 */
export interface RunningView {
  bots: ReadonlyArray<{ config: BotConfig; worker: { health?(): ChannelHealth } }>;
  ownership: { probe(): Promise<void>; unownedBots(): string[] };
}

/** The HTTP server of `bots start` with its metrics. */
export interface OpsServer {
  server: HttpServer;
  metrics: BotsMetrics;
  hooks: PipelineHooks;
  /** Whether writes reach the database; stop it at shutdown. */
  database: DatabaseHealth;
  /** Stops the database probe and closes the server. */
  close(): Promise<void>;
}

/**
 * Starts the process's HTTP server on `port` with `/metrics`, `/healthz` and `/readyz`, and logs
 * the bound port. Warns (log line, on stderr too) when it binds beyond loopback without a token.
 * The database health probes with the instance heartbeat once `running()` gives the bots.
 * @throws UsageError when the port is taken
 */
export async function startOpsServer(
  o: HttpSettings & { bots: BotConfig[]; store: Store; logging: Logging; running: () => RunningView | undefined },
): Promise<OpsServer> {
  const metrics = await createMetrics({ bots: o.bots, store: o.store, databaseUp: () => database.state().up });
  const database = new DatabaseHealth({
    observer: o.store.database.observer,
    probe: async () => o.running()?.ownership.probe(),
    onError: (error) => metrics.storageError(error),
  });
  const server = new HttpServer(o.logging.root);
  const channelOf = new Map(o.bots.map((b) => [b.name, b.channel]));
  mountOpsRoutes(server, {
    metrics,
    thresholdMs: o.thresholdMs,
    secrets: botSecrets(o.bots),
    token: o.token,
    database: () => database.state(),
    unowned: () =>
      o
        .running()
        ?.ownership.unownedBots()
        .map((name) => ({ name, channel: channelOf.get(name) ?? "" })) ?? [],
    bots: () => o.running()?.bots.map((r) => ({ name: r.config.name, channel: r.config.channel, health: () => r.worker.health?.() })),
  });
  if (!o.token && !isLoopbackHost(o.host)) {
    o.logging.root.warn(
      { host: o.host },
      `HTTP server binds ${o.host} beyond loopback without a token: anyone who reaches it reads /metrics and /healthz details; set BOTS_METRICS_TOKEN (or --metrics-token)`,
    );
  }
  try {
    await server.listen({ port: o.port, host: o.host });
  } catch (error) {
    throw new UsageError("HTTP_LISTEN", `cannot listen on ${o.host}:${o.port}: ${(error as Error).message}`, {
      cause: error,
      hint: "pass another --http-port, 0 for any free port, or off",
    });
  }
  database.start();
  o.logging.root.info({ http_port: server.port, host: o.host, metrics_token: o.token ? "set" : "none" }, "HTTP server listening (/metrics, /healthz, /readyz)");
  const close = async () => {
    database.stop();
    await server.close();
  };
  return { server, metrics, hooks: metrics.hooks, database, close };
}
