import type { Logger } from "pino";
import type { BotConfig } from "../../config/schema.js";
import type { Pipeline } from "../../core/pipeline.js";
import { markdownToPlain } from "../../lib/markdown.js";
import { sleep } from "../../lib/retry.js";
import type { Delivery, DeliveryCheck, DeliveryTarget } from "../../core/types.js";
import { ChannelError, describeError } from "../../errors.js";
import type { Store } from "../../storage/index.js";
import { HealthTracker } from "../health.js";
import type { ChannelWorker } from "../types.js";
import { DGIS_AUTH, TwoGisClient } from "./client.js";
import { leaseHolder, pollWithLease, type LeasedPoll, type PollProgress } from "./poll.js";

/** Tuning of {@link TwoGisWorker} (tests shorten the waits). */
export interface TwoGisWorkerOptions {
  /** First back-off of a failed API call, ms. @defaultValue 1000 */
  backoffMs?: number;
  /** Longest back-off (caps Retry-After too), ms. @defaultValue 30000 */
  maxBackoffMs?: number;
  /** Lease lifetime without renewal, ms (renewed every third). @defaultValue 120000 */
  leaseTtlMs?: number;
  /** Overrides `poll_interval_s` inside `bots start`, ms. */
  intervalMs?: number;
  /** Page size of the review list. @defaultValue 50 */
  pageSize?: number;
  /** The database (lease, cursors, stored reviews); required. The channel factory passes it. */
  store?: Store;
  now?: () => number;
}

/**
 * 2GIS for one bot (docs/2gis.md): `send` posts the official answer to a review, and `start` runs a
 * pass ({@link pollWithLease}) at once and then every `poll_interval_s`, so `bots start 2gis` and
 * cron's `bots poll 2gis` share the lease and never poll a bot at the same time.
 */
export class TwoGisWorker implements ChannelWorker {
  private readonly abort = new AbortController();
  private loop?: Promise<void>;
  private readonly store?: Store;
  private readonly holder = leaseHolder();
  /** The HTTP client built from the bot's `2gis:` section. */
  readonly client: TwoGisClient;
  /** The last pass's outcome inside `bots start` (for status and tests). */
  last?: LeasedPoll;
  private readonly tracker: HealthTracker;

  constructor(
    readonly bot: BotConfig,
    private readonly logger: Logger,
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

  /** Receiving state for `/healthz`: the interval loop, and whether its last pass reached 2GIS. */
  health() {
    return this.tracker.get();
  }

  /** Builds the worker (the channel factory's entry point; imports nothing heavy). */
  static async create(bot: BotConfig, logger: Logger, options: TwoGisWorkerOptions = {}): Promise<TwoGisWorker> {
    return new TwoGisWorker(bot, logger, options);
  }

  /**
   * Checks the credentials (signs in unless a token is configured) and starts the interval loop.
   * @throws ChannelError `DGIS_AUTH` naming the bot when 2GIS refuses the login
   */
  async start(pipeline: Pipeline): Promise<void> {
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
    this.loop = this.run(pipeline);
  }

  /** One pass under the lease (what `bots poll 2gis` does for this bot). */
  pass(pipeline: Pipeline, onProgress?: (p: PollProgress) => void): Promise<LeasedPoll> {
    return pollWithLease({
      bot: this.bot,
      store: this.store!,
      pipeline,
      client: this.client,
      logger: this.logger,
      signal: this.abort.signal,
      holder: this.holder,
      leaseTtlMs: this.options.leaseTtlMs ?? 120_000,
      onProgress,
      now: this.options.now,
    });
  }

  private async run(pipeline: Pipeline): Promise<void> {
    const signal = this.abort.signal;
    const interval = this.options.intervalMs ?? this.bot["2gis"]!.poll_interval_s * 1000;
    while (!signal.aborted) {
      try {
        this.last = await this.pass(pipeline);
        this.tracker.ok();
        if (this.last.status === "busy") this.logger.info({ holder: this.last.lease?.holder }, "another run holds the 2GIS lease; pass skipped");
        else {
          const r = this.last.result;
          for (const f of r.failed)
            this.logger.warn({ review_id: f.reviewId, branch_id: f.branchId, msg_id: f.messageId, reason: f.reason }, "2GIS review not answered");
        }
      } catch (error) {
        const fatal = (error as ChannelError).code === DGIS_AUTH;
        this.tracker.failed(error);
        this.logger.error({ err: error }, fatal ? "2GIS refused the credentials; retrying next interval" : "2GIS pass failed; retrying next interval");
      }
      await sleep(interval, signal);
    }
  }

  /** Stops the loop: the current pass takes no further reviews; answers in flight finish in the pipeline. */
  async stop(): Promise<void> {
    this.tracker.stopped("stopped");
    this.abort.abort();
    await this.loop;
  }

  /**
   * Posts the answer as the business's official answer to the review (`target.review_id`, else
   * `chatId`), unsplit; with `reply.format: markdown` as clean plain text (Markdown markers
   * removed, src/lib/markdown.ts), as 2GIS shows no formatting.
   * @returns the 2GIS comment id when given
   * @throws ChannelError after retries; `DGIS_AUTH` when refused
   */
  async send(to: DeliveryTarget, text: string): Promise<Delivery> {
    const shown = this.bot.reply.format === "markdown" ? markdownToPlain(text) : text;
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
