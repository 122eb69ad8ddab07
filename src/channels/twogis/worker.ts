import type { Logger } from "pino";
import type { BotConfig } from "../../config/schema.js";
import type { Pipeline } from "../../core/pipeline.js";
import { markdownToPlain } from "../../lib/markdown.js";
import type { Delivery, DeliveryCheck, DeliveryTarget, OutgoingReply } from "../../core/types.js";
import { ChannelError, describeError } from "../../errors.js";
import type { Store } from "../../storage/index.js";
import { HealthTracker } from "../health.js";
import type { ChannelWorker } from "../types.js";
import { TwoGisClient } from "./client.js";

/** Tuning of {@link TwoGisWorker} (tests shorten the waits). */
export interface TwoGisWorkerOptions {
  /** First back-off of a failed API call, ms. @defaultValue 1000 */
  backoffMs?: number;
  /** Longest back-off (caps Retry-After too), ms. @defaultValue 30000 */
  maxBackoffMs?: number;
  /** Lease lifetime of a pass without renewal, ms (renewed every third; {@link TwoGisWorker.passSettings}). @defaultValue 120000 */
  leaseTtlMs?: number;
  /** Overrides `poll_interval_s` between the passes of `bots start`, ms ({@link TwoGisWorker.passSettings}). */
  intervalMs?: number;
  /** Page size of the review list. @defaultValue 50 */
  pageSize?: number;
  /** The database (lease, cursors, stored reviews); required. The channel factory passes it. */
  store?: Store;
  now?: () => number;
}

/** What a review pass (src/poll-2gis.ts) runs with, from a {@link TwoGisWorker}'s options and its bot's `2gis:` section. */
export interface PassSettings {
  /** The database: lease, cursors, stored reviews. */
  store: Store;
  /** Lease lifetime without renewal, ms. */
  leaseTtlMs: number;
  /** Pause between the passes of `bots start`, ms. */
  intervalMs: number;
  /** Clock, epoch ms UTC. @defaultValue Date.now */
  now?: () => number;
  /** Aborted once the worker stops: the pass takes no further reviews. */
  signal: AbortSignal;
}

/**
 * 2GIS for one bot (docs/2gis.md): the API client, `send` posting the official answer to a
 * review, and the health of its remote calls. Reviews are not pushed: the passes that list and
 * answer them are src/poll-2gis.ts, run once per bot by `bots poll 2gis` and every
 * `poll_interval_s` by `bots start` (src/runner.ts); they take their settings from
 * {@link passSettings} and report to {@link passEnded}.
 */
export class TwoGisWorker implements ChannelWorker {
  private readonly abort = new AbortController();
  private readonly store?: Store;
  /** The HTTP client built from the bot's `2gis:` section. */
  readonly client: TwoGisClient;
  private readonly tracker: HealthTracker;

  constructor(
    readonly bot: BotConfig,
    logger: Logger,
    private readonly options: TwoGisWorkerOptions = {},
  ) {
    this.store = options.store;
    this.tracker = new HealthTracker(options.now);
    const cfg = bot["2gis"]!;
    this.client = new TwoGisClient({
      baseUrl: cfg.api_base_url,
      login: cfg.login,
      password: cfg.password,
      token: cfg.token,
      retries: cfg.max_retries,
      timeoutMs: cfg.timeout_s * 1000,
      backoffMs: options.backoffMs,
      maxBackoffMs: options.maxBackoffMs,
      pageSize: options.pageSize,
      logger,
      signal: this.abort.signal,
    });
  }

  /** Receiving state for `/healthz`: started or stopped, and whether the last pass reached 2GIS. */
  health() {
    return this.tracker.get();
  }

  /** Builds the worker (the channel factory's entry point; imports nothing heavy). */
  static async create(bot: BotConfig, logger: Logger, options: TwoGisWorkerOptions = {}): Promise<TwoGisWorker> {
    return new TwoGisWorker(bot, logger, options);
  }

  /**
   * Checks the credentials (signs in unless a token is configured) and counts as receiving; the
   * passes are run by src/poll-2gis.ts (`pollEvery`), which `bots start` starts next.
   * @throws ChannelError `DGIS_AUTH` naming the bot when 2GIS refuses the login
   */
  async start(_pipeline: Pipeline): Promise<void> {
    if (!this.store) throw new Error("TwoGisWorker needs options.store (the channel factory passes it)");
    try {
      await this.client.ensureToken();
    } catch (error) {
      throw new ChannelError((error as ChannelError).code ?? "DGIS_UNREACHABLE", `bot ${this.bot.name}: ${describeError(error)}`, {
        cause: error,
        status: (error as ChannelError).status,
        hint: (error as ChannelError).hint ?? "check 2gis.api_base_url and the network",
      });
    }
    this.tracker.ok();
    this.tracker.started();
  }

  /**
   * What a pass runs with: the database, lease lifetime, interval, clock, and the stop signal.
   * @throws Error when the worker was built without `options.store`
   */
  get passSettings(): PassSettings {
    if (!this.store) throw new Error("TwoGisWorker needs options.store (the channel factory passes it)");
    return {
      store: this.store,
      leaseTtlMs: this.options.leaseTtlMs ?? 120_000,
      intervalMs: this.options.intervalMs ?? this.bot["2gis"]!.poll_interval_s * 1000,
      now: this.options.now,
      signal: this.abort.signal,
    };
  }

  /** A pass of `bots start` ended: it reached 2GIS (no error; a busy lease counts), or failed with `error` (`/healthz`). */
  passEnded(error?: unknown): void {
    if (error === undefined) this.tracker.ok();
    else this.tracker.failed(error);
  }

  /** Stops: the current pass takes no further reviews and its 2GIS calls are cut; answers in flight finish in the pipeline. */
  async stop(): Promise<void> {
    this.tracker.stopped("stopped");
    this.abort.abort();
  }

  /**
   * Posts the answer as the business's official answer to the review (`target.review_id`, else
   * `chatId`), unsplit: the text alone (2GIS shows nothing else); with the format (the reply's,
   * else the bot's `reply.format`) `markdown` as clean plain text (Markdown markers removed,
   * src/lib/markdown.ts), as 2GIS shows no formatting.
   * @returns the 2GIS comment id when given
   * @throws ChannelError after retries; `DGIS_AUTH` when refused
   */
  async send(to: DeliveryTarget, reply: OutgoingReply): Promise<Delivery> {
    const shown = (reply.format ?? this.bot.reply.format) === "markdown" ? markdownToPlain(reply.text) : reply.text;
    return { channelMessageId: await this.client.answer(reviewIdOf(to), shown) };
  }

  /**
   * Whether the review already carries the business's official answer
   * ({@link TwoGisClient.officialAnswer}).
   * @throws ChannelError when 2GIS cannot be asked
   */
  async checkDelivered(to: DeliveryTarget): Promise<DeliveryCheck> {
    const found = await this.client.officialAnswer(reviewIdOf(to));
    return found ? { delivered: true, text: found.text, channelMessageId: found.id } : { delivered: false };
  }
}

/** The review an answer goes to: `target.review_id`, else the chat id. */
function reviewIdOf(to: DeliveryTarget): string {
  return typeof to.target.review_id === "string" ? to.target.review_id : to.chatId;
}
