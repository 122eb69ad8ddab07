import type { Registry } from "prom-client";
import type { BotConfig } from "../config/schema.js";
import type { PipelineDeps } from "../core/pipeline.js";
import { accountSummaries, replyCosts } from "../core/status.js";
import type { PipelineContext } from "../core/types.js";
import type { Store } from "../storage/index.js";

/**
 * What the pipeline tells an observer (additive hooks of {@link PipelineDeps}); the metrics
 * implement it, and so can anything else that wants per-message events.
 */
export type PipelineHooks = Required<Pick<PipelineDeps, "onIntake" | "onOutcome">>;

/** A running bot as the gauges read it. */
export interface MetricsSource {
  name: string;
  /** Answers waiting or in flight (`Pipeline.backlog`). */
  backlog(): number;
  /** Answers being worked on (`Pipeline.answersInFlight`). */
  inFlight(): number;
}

/** Options of {@link createMetrics}. */
export interface MetricsOptions {
  bots: BotConfig[];
  store: Pick<Store, "balance" | "database">;
  /** Longest age of the database-read gauges (balances, waiting messages), ms. @defaultValue 30000 */
  dbReadIntervalMs?: number;
  /** Clock, epoch ms. @defaultValue Date.now */
  now?: () => number;
  /** Process defaults (CPU, memory, event loop lag...). @defaultValue true */
  processDefaults?: boolean;
  /** Whether writes reach the database now (`DatabaseHealth.state().up`), for `bots_database_up`; absent = no such gauge. */
  databaseUp?: () => boolean;
}

/** Prometheus metrics of one `bots start` process. */
export interface BotsMetrics {
  /** A registry of this process alone (not prom-client's global one). */
  registry: Registry;
  /** Pass to every pipeline: counts messages, answers, tokens, latency, delivery failures. */
  hooks: PipelineHooks;
  /**
   * Sets where the gauges read the bots running here: called at every scrape, since ownership
   * moves bots between instances (a bot this instance does not run has no queue gauges here).
   */
  attach(sources: () => MetricsSource[]): void;
  /** The text exposition format (prom-client `Registry.metrics()`). */
  render(): Promise<{ contentType: string; body: string }>;
  /** Counts a failed database operation in `bots_storage_errors_total{code}` (the driver's code, see {@link errorLabel}). */
  storageError(error: unknown): void;
}

/** Statuses of incoming messages that still wait for an answer or for confirmation. */
const PENDING_STATUSES = { waiting: ["received"], unconfirmed: ["delivering", "unconfirmed"] } as const;

/**
 * Builds the metrics (README, "Metrics and health"), importing prom-client on demand so `bots --help` does
 * not load it. Labels carry bot names, channels, models, account names and error codes only:
 * never a token, key or message text.
 *
 * - `bots_messages_total{bot,channel,status}`: incoming messages by how they ended (`answered`,
 *   `failed`, `no_balance`, `skipped`, `filtered`, `duplicate`);
 * - `bots_answers_total{bot,channel}`;
 * - `bots_model_latency_seconds{bot,model}` (histogram) and `bots_model_tokens_total{bot,model,kind}`
 *   with kind `prompt` / `completion` (OpenAI `usage.prompt_tokens`, `completion_tokens`);
 * - `bots_delivery_failures_total{bot,channel,error}`: the ChannelError code and status
 *   (`TG_API:403`, `VK_API:901`, `TG_NETWORK`);
 * - `bots_queue_depth{bot}` and `bots_answers_in_flight{bot}`;
 * - `bots_messages_waiting{bot}` / `bots_messages_unconfirmed{bot}` and
 *   `bots_balance_credits{account}` / `bots_replies_left{account}`, read from the database at most
 *   every `dbReadIntervalMs`;
 * - prom-client's process defaults (`process_*`, `nodejs_*`).
 */
export async function createMetrics(options: MetricsOptions): Promise<BotsMetrics> {
  const prom = await import("prom-client");
  const registry = new prom.Registry();
  if (options.processDefaults !== false) prom.collectDefaultMetrics({ register: registry });
  const now = options.now ?? Date.now;
  const interval = options.dbReadIntervalMs ?? 30_000;
  const channelOf = new Map(options.bots.map((b) => [b.name, b.channel]));
  let sources: () => MetricsSource[] = () => [];

  const messages = new prom.Counter({
    name: "bots_messages_total",
    help: "Incoming messages by how their handling ended",
    labelNames: ["bot", "channel", "status"],
    registers: [registry],
  });
  const answers = new prom.Counter({
    name: "bots_answers_total",
    help: "Answers delivered and recorded",
    labelNames: ["bot", "channel"],
    registers: [registry],
  });
  const latency = new prom.Histogram({
    name: "bots_model_latency_seconds",
    help: "Model call latency (chat completion, tool calls included), seconds",
    labelNames: ["bot", "model"],
    buckets: [0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120],
    registers: [registry],
  });
  const tokens = new prom.Counter({
    name: "bots_model_tokens_total",
    help: "Model tokens used (OpenAI usage)",
    labelNames: ["bot", "model", "kind"],
    registers: [registry],
  });
  const deliveryFailures = new prom.Counter({
    name: "bots_delivery_failures_total",
    help: "Answers the channel refused or could not take, by channel error",
    labelNames: ["bot", "channel", "error"],
    registers: [registry],
  });
  const storageErrors = new prom.Counter({
    name: "bots_storage_errors_total",
    help: "Failed database operations by driver error code",
    labelNames: ["code"],
    registers: [registry],
  });
  const databaseUp = options.databaseUp;
  if (databaseUp) {
    new prom.Gauge({
      name: "bots_database_up",
      help: "1 while writes reach the database (last write confirmed, none stalled), 0 otherwise",
      registers: [registry],
      collect() {
        this.set(databaseUp() ? 1 : 0);
      },
    });
  }
  const forEachSource = (g: { set(labels: { bot: string }, v: number): void; reset(): void }, read: (s: MetricsSource) => number) => {
    g.reset();
    for (const s of sources()) g.set({ bot: s.name }, read(s));
  };
  new prom.Gauge({
    name: "bots_queue_depth",
    help: "Answers waiting for their turn (per conversation order, llm.concurrency)",
    labelNames: ["bot"],
    registers: [registry],
    collect() {
      forEachSource(this, (s) => Math.max(0, s.backlog() - s.inFlight()));
    },
  });
  new prom.Gauge({
    name: "bots_answers_in_flight",
    help: "Answers being worked on now",
    labelNames: ["bot"],
    registers: [registry],
    collect() {
      forEachSource(this, (s) => s.inFlight());
    },
  });

  // Database-read gauges share one cached read, refreshed at most every `interval`.
  let cache:
    | {
        at: number;
        pending: Map<string, { waiting: number; unconfirmed: number }>;
        accounts: Array<{ account: string; balance: number; replies_left: number | null }>;
      }
    | undefined;
  let reading: Promise<typeof cache> | undefined;
  const read = async () => {
    if (cache && now() - cache.at < interval) return cache;
    reading ??= (async () => {
      try {
        const pending = await pendingCounts(
          options.store,
          options.bots.map((b) => b.name),
        );
        const accounts = await accountSummaries(options.store, replyCosts(options.bots));
        cache = { at: now(), pending, accounts };
        return cache;
      } finally {
        reading = undefined;
      }
    })();
    return reading;
  };
  const dbGauge = (
    name: string,
    help: string,
    label: "bot" | "account",
    fill: (g: { set(l: Record<string, string>, v: number): void }, c: NonNullable<typeof cache>) => void,
  ) =>
    new prom.Gauge({
      name,
      help,
      labelNames: [label],
      registers: [registry],
      async collect() {
        // A database outage must not break the scrape: the last values stay.
        const c = await read().catch(() => cache);
        if (c) fill(this, c);
      },
    });
  dbGauge("bots_messages_waiting", "Incoming messages recorded and not answered yet (status received)", "bot", (g, c) => {
    for (const [bot, n] of c.pending) g.set({ bot }, n.waiting);
  });
  dbGauge("bots_messages_unconfirmed", "Answers sent or being sent whose delivery is not recorded (status delivering, unconfirmed)", "bot", (g, c) => {
    for (const [bot, n] of c.pending) g.set({ bot }, n.unconfirmed);
  });
  dbGauge("bots_balance_credits", "Balance of an account, credits", "account", (g, c) => {
    for (const a of c.accounts) g.set({ account: a.account }, a.balance / 100);
  });
  dbGauge("bots_replies_left", "Replies the account still pays for at the dearest bot's cost_per_reply", "account", (g, c) => {
    for (const a of c.accounts) if (a.replies_left !== null) g.set({ account: a.account }, a.replies_left);
  });

  const hooks: PipelineHooks = {
    onIntake(ctx: PipelineContext) {
      const channel = ctx.msg.channel;
      if (ctx.outcome === "duplicate") messages.inc({ bot: ctx.msg.bot, channel, status: "duplicate" });
      else if (ctx.filtered) messages.inc({ bot: ctx.msg.bot, channel, status: "filtered" });
    },
    onOutcome(ctx: PipelineContext) {
      const bot = ctx.msg.bot;
      const channel = channelOf.get(bot) ?? ctx.msg.channel;
      messages.inc({ bot, channel, status: ctx.outcome ?? "unknown" });
      if (ctx.outcome === "answered") answers.inc({ bot, channel });
      const c = ctx.completion;
      if (c) {
        latency.observe({ bot, model: c.model }, c.latencyMs / 1000);
        tokens.inc({ bot, model: c.model, kind: "prompt" }, c.usage.prompt_tokens ?? 0);
        tokens.inc({ bot, model: c.model, kind: "completion" }, c.usage.completion_tokens ?? 0);
      }
      // Failed after the model answered and before the channel took it: a delivery failure.
      if (ctx.outcome === "failed" && c && !ctx.delivery) deliveryFailures.inc({ bot, channel, error: errorLabel(ctx.error) });
    },
  };

  return {
    registry,
    hooks,
    attach(read) {
      sources = read;
    },
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
    storageError(error) {
      storageErrors.inc({ code: errorLabel(error) });
    },
  };
}

/** A bounded label for an error: its code (and HTTP status or VK error code), never its message. */
export function errorLabel(error: unknown): string {
  const e = error as { code?: unknown; status?: unknown } | undefined;
  const code = typeof e?.code === "string" && /^[A-Z0-9_]{1,40}$/.test(e.code) ? e.code : "ERROR";
  return typeof e?.status === "number" ? `${code}:${e.status}` : code;
}

/**
 * Incoming messages per bot still waiting for an answer (`received`) or for confirmation of a
 * send (`delivering`, `unconfirmed`), on the `(bot, status, id)` index.
 */
export async function pendingCounts(store: Pick<Store, "database">, bots: string[]): Promise<Map<string, { waiting: number; unconfirmed: number }>> {
  const out = new Map(bots.map((b) => [b, { waiting: 0, unconfirmed: 0 }]));
  if (!bots.length) return out;
  const all = [...PENDING_STATUSES.waiting, ...PENDING_STATUSES.unconfirmed];
  const rows = await store.database.db
    .selectFrom("messages")
    .select((eb) => ["bot", "status", eb.fn.countAll<number>().as("n")])
    .where("bot", "in", bots)
    .where("status", "in", all as never)
    .where("direction", "=", "in")
    .groupBy(["bot", "status"])
    .execute();
  for (const r of rows) {
    const slot = out.get(r.bot);
    if (!slot) continue;
    if ((PENDING_STATUSES.waiting as readonly string[]).includes(r.status)) slot.waiting += Number(r.n);
    else slot.unconfirmed += Number(r.n);
  }
  return out;
}
