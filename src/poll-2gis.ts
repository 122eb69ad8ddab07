import type { Logger } from "pino";
import { DGIS_AUTH, type TwoGisClient, type TwoGisReview } from "./channels/twogis/client.js";
import { reviewKey, skipReason, toIncoming } from "./channels/twogis/translate.js";
import type { ChannelWorker } from "./channels/types.js";
import { TwoGisWorker } from "./channels/twogis/worker.js";
import type { BotConfig } from "./config/schema.js";
import { parseSince } from "./config/schema.js";
import type { Pipeline } from "./core/pipeline.js";
import { KeyedQueue } from "./core/queue.js";
import { processHolder, recoverBot } from "./core/recovery.js";
import { type ChannelError, describeError } from "./errors.js";
import { sleep } from "./lib/retry.js";
import type { Store } from "./storage/index.js";
import type { LeaseRow } from "./storage/leases.js";
import { decodeMeta, type MessageRow } from "./storage/messages.js";
import type { IncomingStatus } from "./storage/schema.js";

/** Name of a branch's cursor in the `cursors` table. Its value is an ISO 8601 UTC date-time. */
export function branchCursorName(branchId: string): string {
  return `2gis:branch:${branchId}`;
}

/** Name of a bot's polling lease in the `leases` table. */
export function pollLeaseName(bot: string): string {
  return `poll:2gis:${bot}`;
}

/** One review (or branch) that could not be answered in a pass. */
export interface PollFailure {
  branchId: string;
  /** null when a whole branch could not be listed. */
  reviewId: string | null;
  /** Stored incoming message id, when there is one. */
  messageId: number | null;
  /** `failed` (model, 2GIS or storage error), `no_balance`, `unknown` (a run stopped while posting), `branch` (listing failed). */
  kind: "failed" | "no_balance" | "unknown" | "branch";
  reason: string;
}

/** What one pass did for one bot. */
export interface PollResult {
  bot: string;
  answered: number;
  /** Recorded as `skipped` (rating, empty text) or `filtered` (spam rules) in this pass. */
  skipped: number;
  failed: PollFailure[];
  /** New or retried reviews left for the next pass by `max_per_run` or a stop. */
  deferred: number;
}

/** Progress of a pass: reviews handed to the pipeline and how many of them are finished. */
export interface PollProgress {
  bot: string;
  done: number;
  total: number;
}

/** What {@link pollOnce} works with (all injected). */
export interface PollDeps {
  bot: BotConfig;
  store: Store;
  /** The bot's pipeline; its channel must be a {@link TwoGisWorker} (or anything that posts official answers). */
  pipeline: Pipeline;
  client: TwoGisClient;
  logger: Logger;
  /** Stops taking further reviews (answers in flight finish or stay stored). */
  signal?: AbortSignal;
  /** Called now and then while answers are produced. */
  onProgress?: (p: PollProgress) => void;
  /** Clock for `receivedMs`, epoch ms UTC. @defaultValue Date.now */
  now?: () => number;
  /** Who runs the pass (the lease holder), stored with its recovery run. @defaultValue a new `host:pid:random` */
  holder?: string;
}

const FINAL: ReadonlySet<IncomingStatus> = new Set(["answered", "skipped", "filtered"]);
const RETRYABLE: ReadonlySet<IncomingStatus> = new Set(["received", "failed", "no_balance"]);

/**
 * One pass over a 2GIS bot's branches (docs/2gis.md, "What a pass does"): list each branch's reviews without a company
 * answer from its cursor (or `since`), then, oldest first:
 * - a new review outside `answer_ratings`, or without text when `answer_empty` is false, is
 *   recorded with status `skipped`;
 * - a new review goes to the pipeline (`pipeline.submit`, kind `reviews`, thread and dedupe key
 *   `2gis:review:<id>`, prompt variables `rating`, `review_text`, `author_name`, `branch_id`,
 *   `review_id`, `review_date`), at most `max_per_run` answers per pass;
 * - a stored review that was not answered (`failed`, `no_balance`, or `received` by a run that
 *   was killed) is answered again through `pipeline.answerStored`, after refunding a reservation
 *   the killed run left open;
 * - a review stored as `delivering` (a run stopped while posting) is not posted again: reported.
 * Then it waits for the answers, reads their outcome from the database and moves each branch's
 * cursor past the reviews that were answered or deliberately skipped, up to the first that was
 * not, so failures are listed again next pass.
 *
 * Run it under the bot's lease ({@link pollWithLease}).
 * @throws ChannelError `DGIS_AUTH` when 2GIS refuses the credentials (fatal for the bot);
 *   StorageError when the database fails
 */
export async function pollOnce(deps: PollDeps): Promise<PollResult> {
  const { bot, store, pipeline, client, logger, signal } = deps;
  const cfg = bot["2gis"]!;
  const sinceMs = cfg.since ? parseSince(cfg.since) : -Infinity;
  const ratings = new Set(cfg.answer_ratings);
  const result: PollResult = { bot: bot.name, answered: 0, skipped: 0, failed: [], deferred: 0 };
  let budget = cfg.max_per_run;
  const now = deps.now ?? Date.now;

  // Recovery first (docs/durability.md): what an earlier pass left behind. A cut-off answer is checked on
  // 2GIS itself; stranded reviews are resumed whatever their age.
  const recovered = await recoverBot({
    bot,
    store,
    pipeline,
    logger,
    holder: deps.holder ?? processHolder(),
    now,
    checkDelivered: async (row) => {
      const found = await client.officialAnswer(reviewIdOf(row));
      return found ? { delivered: true as const, text: found.text, channelMessageId: found.id } : { delivered: false as const };
    },
  });
  // Reviews resumed by recovery, by review id → stored message id: the list below must not take them again.
  const taken = new Map<string, number>();
  for (const id of recovered.resumedIds) {
    const row = await store.messages.get(id);
    if (row) taken.set(reviewIdOf(row), id);
  }

  const branches: Array<{ branchId: string; cursor: number; reviews: TwoGisReview[] }> = [];
  for (const branchId of cfg.branch_ids) {
    if (signal?.aborted) break;
    const stored = await store.cursors.get(bot.name, branchCursorName(branchId));
    const cursor = stored ? Date.parse(stored) : -Infinity;
    try {
      const reviews = await client.listReviews(branchId, Math.max(cursor, sinceMs));
      branches.push({ branchId, cursor, reviews });
      logger.debug({ branch_id: branchId, listed: reviews.length }, "2GIS reviews listed");
    } catch (error) {
      if ((error as { code?: string }).code === DGIS_AUTH) throw error;
      logger.error({ err: error, branch_id: branchId }, "2GIS reviews could not be listed");
      result.failed.push({ branchId, reviewId: null, messageId: null, kind: "branch", reason: describeError(error) });
    }
  }

  const retries = new KeyedQueue(bot.llm.concurrency, (error, key) => logger.error({ err: error, thread_key: key }, "retry of a stored review crashed"));
  let total = taken.size;
  outer: for (const { branchId, reviews } of branches) {
    for (const review of reviews) {
      if (signal?.aborted) break outer;
      if (taken.has(review.id)) continue;
      const key = reviewKey(review.id);
      let row = await store.messages.byDedupeKey(bot.name, key);
      if (!row) {
        const skip = skipReason(review, ratings, cfg.answer_empty);
        if (skip) {
          const id = await store.messages.insertIncoming({ ...incomingFields(bot, review, now()), status: "skipped", error: skip });
          if (id !== null) {
            result.skipped++;
            logger.info({ msg_id: id, thread_key: key, reason: skip }, "review skipped");
          }
          continue;
        }
        if (budget <= 0) {
          result.deferred++;
          continue;
        }
        budget--;
        const intake = await pipeline.submit(toIncoming(bot, review, now()));
        if (intake.status === "queued") {
          taken.set(review.id, intake.id);
          total++;
          continue;
        }
        if (intake.status === "filtered") {
          result.skipped++;
          continue;
        }
        // Recorded by someone else meanwhile: treat it as stored.
        row = await store.messages.byDedupeKey(bot.name, key);
        if (!row) continue;
      }
      if (FINAL.has(row.status as IncomingStatus)) continue;
      if (row.status === "delivering") {
        // Recovery could not ask 2GIS about it this time; the next pass asks again.
        result.failed.push({
          branchId,
          reviewId: review.id,
          messageId: row.id,
          kind: "unknown",
          reason:
            "a run stopped while posting this answer and 2GIS could not be asked whether it arrived; the next pass asks again (not posted meanwhile, to answer at most once)",
        });
        continue;
      }
      if (!RETRYABLE.has(row.status as IncomingStatus)) continue;
      if (budget <= 0) {
        result.deferred++;
        continue;
      }
      budget--;
      const stored: MessageRow = row;
      taken.set(review.id, stored.id);
      total++;
      logger.info({ msg_id: stored.id, thread_key: key, previous: stored.status }, "answering a stored review again");
      // Recovery refunded what a killed run left reserved; we hold the lease, so no other pass answers it.
      retries.push(key, async () => void (await pipeline.answerStored(stored)));
    }
  }

  await waitForAnswers(pipeline, retries, signal, () =>
    deps.onProgress?.({ bot: bot.name, done: Math.max(0, total - pipeline.backlog - retries.size), total }),
  );

  // Outcomes, from the database: the pipeline recorded each one. After a stop (abort, lost
  // lease) some answers may still be running: those count as left for the next run.
  const finished = !signal?.aborted;
  const branchOf = new Map(branches.flatMap((b) => b.reviews.map((r) => [r.id, b.branchId] as const)));
  const statusOf = new Map<string, IncomingStatus>();
  for (const [reviewId, id] of taken) {
    const row = await store.messages.get(id);
    const status = (row?.status ?? "received") as IncomingStatus;
    statusOf.set(reviewId, status);
    const branchId = branchOf.get(reviewId)!;
    if (status === "answered" || (status === "delivering" && finished)) {
      // `delivering` once our own attempt is over: posted, but the record failed (the pipeline
      // logged it). Counted as answered, but the cursor stays before it: the cursor acknowledges
      // only what is recorded, and the next pass's recovery asks 2GIS and records it.
      if (status === "answered") statusOf.set(reviewId, "answered");
      result.answered++;
    } else if (status === "filtered" || status === "skipped") result.skipped++;
    else if (status === "no_balance")
      result.failed.push({ branchId, reviewId, messageId: id, kind: "no_balance", reason: row?.error ?? "the balance cannot pay for an answer" });
    else if (status === "failed") result.failed.push({ branchId, reviewId, messageId: id, kind: "failed", reason: row?.error ?? "failed" });
    else {
      // Still `received`: the pass was stopped before its answer ran.
      result.deferred++;
    }
  }

  // Cursors: past the oldest-first prefix of reviews that are done.
  for (const { branchId, cursor, reviews } of branches) {
    let to = cursor;
    for (const review of reviews) {
      const status = statusOf.get(review.id) ?? (await store.messages.byDedupeKey(bot.name, reviewKey(review.id)))?.status;
      if (!status || !FINAL.has(status as IncomingStatus)) break;
      to = Math.max(to, review.createdMs);
    }
    if (to > cursor) {
      await store.cursors.set(bot.name, branchCursorName(branchId), new Date(to).toISOString());
      logger.debug({ branch_id: branchId, cursor: new Date(to).toISOString() }, "2GIS cursor moved");
    }
  }
  logger.info({ answered: result.answered, skipped: result.skipped, failed: result.failed.length, deferred: result.deferred }, "2GIS pass done");
  return result;
}

/** The 2GIS review id a stored review message answers (`target.review_id`, else its chat id). */
function reviewIdOf(row: MessageRow): string {
  const reviewId = decodeMeta(row.meta).target?.review_id;
  return typeof reviewId === "string" ? reviewId : row.chat_id;
}

/** Waits until the pipeline and the retry queue are idle, or the signal aborts; ticks progress. */
async function waitForAnswers(pipeline: Pipeline, retries: KeyedQueue, signal: AbortSignal | undefined, tick: () => void): Promise<void> {
  const idle = Promise.all([pipeline.onIdle(), retries.onIdle()]).then(() => undefined);
  tick();
  const timer = setInterval(tick, 250);
  try {
    if (!signal) return await idle;
    await Promise.race([
      idle,
      new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true }))),
    ]);
  } finally {
    clearInterval(timer);
    tick();
  }
}

function incomingFields(bot: BotConfig, review: TwoGisReview, nowMs: number) {
  const msg = toIncoming(bot, review, nowMs);
  return {
    bot: msg.bot,
    channel: msg.channel,
    thread_key: msg.threadKey,
    chat_id: msg.chatId,
    user_id: msg.userId,
    user_name: msg.userName,
    text: msg.text,
    dedupe_key: msg.dedupeKey,
    channel_message_id: msg.channelMessageId,
    meta: { kind: msg.kind, target: msg.target, vars: msg.vars },
    created_ms: msg.receivedMs,
  };
}

/** The outcome of {@link pollWithLease}: a pass, or nothing because another run holds the lease. */
export type LeasedPoll = { status: "done"; result: PollResult } | { status: "busy"; bot: string; lease?: LeaseRow };

/**
 * Runs {@link pollOnce} under the bot's lease `poll:2gis:<bot>`: takes it (or returns `busy` when
 * another live run holds it), renews it every third of `leaseTtlMs` while the pass runs, stops
 * taking reviews if it was lost, and releases it at the end. A run killed with SIGKILL leaves the
 * lease to expire after at most `leaseTtlMs`.
 * @param leaseTtlMs ms
 */
export async function pollWithLease(deps: PollDeps & { holder: string; leaseTtlMs: number }): Promise<LeasedPoll> {
  const name = pollLeaseName(deps.bot.name);
  const { store, logger, holder, leaseTtlMs } = deps;
  if (!(await store.leases.acquire(name, holder, leaseTtlMs))) {
    return { status: "busy", bot: deps.bot.name, lease: await store.leases.get(name) };
  }
  const lost = new AbortController();
  const signal = deps.signal ? AbortSignal.any([deps.signal, lost.signal]) : lost.signal;
  const timer = setInterval(
    () => {
      store.leases
        .renew(name, holder, leaseTtlMs)
        .then((ok) => {
          if (!ok && !lost.signal.aborted) {
            logger.warn({ lease: name }, "lease lost to another run; taking no further reviews");
            lost.abort();
          }
        })
        .catch((error) => logger.warn({ err: error, lease: name }, "lease could not be renewed"));
    },
    Math.max(50, Math.floor(leaseTtlMs / 3)),
  );
  try {
    return { status: "done", result: await pollOnce({ ...deps, signal, holder }) };
  } finally {
    clearInterval(timer);
    await store.leases.release(name, holder).catch((error) => logger.warn({ err: error, lease: name }, "lease could not be released; it expires by itself"));
  }
}

/** Progress callback of a pass (a TTY line in `bots poll 2gis`). */
export type OnPollProgress = (p: PollProgress) => void;

/**
 * The worker as a {@link TwoGisWorker}: the review passes need its client and settings.
 * @throws Error for any other worker (a 2GIS bot's worker comes from the 2GIS channel factory)
 */
function twoGisWorker(worker: ChannelWorker): TwoGisWorker {
  if (!(worker instanceof TwoGisWorker)) throw new Error("a 2GIS bot's channel worker must be a TwoGisWorker (src/channels/twogis/worker.ts)");
  return worker;
}

/**
 * One pass of a 2GIS worker's bot under its lease ({@link pollWithLease}), with the worker's
 * client, database, lease lifetime and clock; the pass takes no further reviews once the worker
 * stops. What `bots poll 2gis` runs for each bot, and each interval of `bots start`.
 * @param holder the lease holder (`host:pid:random`, {@link processHolder})
 * @throws as {@link pollOnce}; Error when the worker has no database
 */
export function passWithLease(worker: TwoGisWorker, pipeline: Pipeline, logger: Logger, holder: string, onProgress?: OnPollProgress): Promise<LeasedPoll> {
  const s = worker.passSettings;
  return pollWithLease({
    bot: worker.bot,
    store: s.store,
    pipeline,
    client: worker.client,
    logger,
    signal: s.signal,
    holder,
    leaseTtlMs: s.leaseTtlMs,
    onProgress,
    now: s.now,
  });
}

/**
 * Polls a 2GIS bot inside `bots start`: a pass ({@link passWithLease}) at once and then every
 * `poll_interval_s` (the worker's `intervalMs` in tests) until the worker stops, so the
 * long-running process and cron's `bots poll 2gis` share the lease and never poll the bot at
 * the same time. Each pass's outcome goes to the worker's health (`/healthz`) and the log; a
 * failed pass (2GIS or the database away, credentials refused) is retried next interval.
 * Resolves once the worker stopped and the pass running then ended; never rejects.
 * @throws Error at once (before polling) when the worker is not a {@link TwoGisWorker}
 */
export function pollEvery(channel: ChannelWorker, pipeline: Pipeline, logger: Logger): Promise<void> {
  const worker = twoGisWorker(channel);
  const holder = processHolder();
  const { signal, intervalMs } = worker.passSettings;
  const loop = async (): Promise<void> => {
    while (!signal.aborted) {
      try {
        logPass(await passWithLease(worker, pipeline, logger, holder), logger);
        worker.passEnded();
      } catch (error) {
        const fatal = (error as ChannelError).code === DGIS_AUTH;
        worker.passEnded(error);
        logger.error({ err: error }, fatal ? "2GIS refused the credentials; retrying next interval" : "2GIS pass failed; retrying next interval");
      }
      await sleep(intervalMs, signal);
    }
  };
  return loop();
}

/** Logs a pass of the interval loop: skipped for a busy lease, or each review left unanswered. */
function logPass(outcome: LeasedPoll, logger: Logger): void {
  if (outcome.status === "busy") {
    logger.info({ holder: outcome.lease?.holder }, "another run holds the 2GIS lease; pass skipped");
    return;
  }
  for (const f of outcome.result.failed)
    logger.warn({ review_id: f.reviewId, branch_id: f.branchId, msg_id: f.messageId, reason: f.reason }, "2GIS review not answered");
}
