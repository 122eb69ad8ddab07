import { setMaxListeners } from "node:events";
import type { Logger } from "pino";
import type { BotConfig } from "../config/schema.js";
import { FencedError, StorageError } from "../errors.js";
import { compose, type Middleware } from "../lib/compose.js";
import { RecentIds } from "../lib/recent-ids.js";
import { sleep } from "../lib/retry.js";
import type { LlmClient, ToolDefinition } from "../llm/client.js";
import { isRetryableStorageError } from "../storage/faults.js";
import type { Store } from "../storage/index.js";
import { type MessageRow, partialAnswer } from "../storage/messages.js";
import type { OwnerFence } from "../storage/owners.js";
import { albumStage } from "./albums.js";
import { transcribeStage } from "./stages/transcribe.js";
import type { AudioFetcher } from "./voice.js";
import type { ImageFetcher } from "./images.js";
import { KeyedQueue, Semaphore } from "./queue.js";
import { resumeReceived } from "./recovery.js";
import { type AnswerContext, type AnswerState, StopError } from "./stages/answer.js";
import { balanceStage, standingChargeStage } from "./stages/balance.js";
import { boundaryStage } from "./stages/boundary.js";
import { contextStage } from "./stages/context.js";
import { deliverStage } from "./stages/deliver.js";
import { freeReplySender } from "./stages/free-reply.js";
import { generateStage } from "./stages/generate.js";
import { notifyStage } from "./stages/notify.js";
import { messageFromRow, recordStage } from "./stages/record.js";
import { settleStage } from "./stages/settle.js";
import { spamStage } from "./stages/spam.js";
import { visionStage } from "./stages/vision.js";
import type { AcceptedUpdates, ChannelSender, IncomingMessage, Notifier, OutgoingReply, PipelineContext } from "./types.js";

export { StopError } from "./stages/answer.js";
export { buildPrompt } from "./stages/context.js";
export { messageFromRow } from "./stages/record.js";

/**
 * A feature plugged into the pipeline by the bot's config: gates run before the
 * balance is touched (a gate that does not call `next` stops the message), tools are offered to
 * the model.
 */
export interface Feature {
  name: string;
  gate?: Middleware<PipelineContext>;
  tools?: ToolDefinition<PipelineContext>[];
  /** Kinds of updates beyond text and pictures the feature takes (shared contacts, membership changes...). */
  accepts?: AcceptedUpdates;
  /** Background work started with the bot (e.g. a report schedule); `bots start` only. */
  start?(): void | Promise<void>;
  /** Stops the background work. */
  stop?(): Promise<void>;
}

/** What the pipeline talks to, all injected, so tests use the real thing locally. */
export interface PipelineDeps {
  bot: BotConfig;
  store: Store;
  llm: LlmClient;
  channel: ChannelSender;
  logger: Logger;
  notifier?: Notifier;
  features?: Feature[];
  /** Clock, epoch ms UTC. @defaultValue Date.now */
  now?: () => number;
  /** Back-off for database blips while recording, ms. @defaultValue 200 */
  storageRetryBaseMs?: number;
  /** Called once per message when its processing ends, whatever the outcome (metrics, benches). */
  onOutcome?: (ctx: PipelineContext) => void;
  /**
   * Called once per submitted message when intake ends (recorded and queued, filtered, or a
   * duplicate: see `ctx.outcome`, `ctx.filtered`); not when recording failed (metrics).
   */
  onIntake?: (ctx: PipelineContext) => void;
  /** Fetches pictures for the model (`llm.vision`); without it pictures are placeholders. */
  images?: ImageFetcher;
  /** Downloads voice messages for transcription (`llm.transcription`); without it they fail. */
  audio?: AudioFetcher;
  /**
   * Scale-out: this instance's ownership of the bot. Every write of an answer (reserve, status
   * change, settle, refund) is conditional on it in the same statement or transaction, so an
   * instance that lost the bot (paused or cut off past its lease) writes nothing and never sends.
   */
  fence?: OwnerFence;
  /**
   * Record only: intake (dedupe, spam, record) runs, answers do not; recorded messages stay
   * `received` for the bot's owner (an instance that does not own the bot but serves its
   * webhook or callback). @defaultValue false
   */
  recordOnly?: boolean;
  /** Called when a write was refused by the fence (the owner should re-read ownership now). */
  onFenced?: (error: FencedError) => void;
  /**
   * Scale-out: asked at each intake; true while other instances may record this bot's messages
   * (peers alive, webhooks or callbacks). Then, before a new message is queued, the earlier
   * `received` messages of its thread that this pipeline does not hold are queued first (one
   * indexed read), and a duplicate found still `received` is queued too, so a thread is answered
   * in arrival order even when its messages were recorded on two instances (e.g. one recorded by
   * an instance that lost the bot while it was cut off, the next polled by the new owner).
   * @defaultValue never
   */
  catchUp?: () => boolean;
  /**
   * Scale-out: true while this instance's lease is safely fresh (its last heartbeat that reached
   * the database is well inside the lease: `Ownership.leaseFresh`). Before an answer is
   * sent the pipeline waits for it (or for a stop), so an instance back from a database outage
   * does not send an answer that another instance's take-over, landing in the same instant,
   * would leave unrecorded (`unconfirmed`). @defaultValue always fresh
   */
  leaseFresh?: () => boolean;
  /** How long a Telegram album waits for more parts, ms. @defaultValue 1000 */
  albumWindowMs?: number;
  /**
   * What the channel hands over beyond text and pictures ({@link Pipeline.accepts}).
   * @defaultValue every feature's `accepts` together
   */
  accepts?: AcceptedUpdates;
}

/**
 * What happened at intake, each a positive result that allows the channel to acknowledge the
 * update: `queued` — recorded (`received`) and queued for an answer (in record-only mode left for
 * the owner); `filtered` — recorded as `filtered` by the spam rules; `duplicate` — recorded
 * before (the unique dedupe key). Anything else is a throw: not recorded, not to be acknowledged.
 */
export type IntakeResult = { status: "duplicate" } | { status: "filtered"; id: number; reason: string } | { status: "queued"; id: number };

/**
 * The channel-agnostic pipeline (docs/architecture.md, one message's path): the intake stages
 * spam → record (the insert dedupes on the unique key), then, queued per thread key, the answer
 * stages albums → feature gates → vision → balance → boundary → context → generate → deliver →
 * settle → notify, each a factory in src/core/stages/. This class keeps the queue, the intake
 * order, the repeat of an answer a database outage cut short, and the drain.
 *
 * {@link submit} returns once the message is recorded (or dropped); the answer follows in a
 * {@link KeyedQueue}: one at a time per thread key, concurrently across keys, with at most
 * `llm.concurrency` model calls in flight.
 */
export class Pipeline {
  private readonly queue: KeyedQueue;
  /** Bounds model calls in flight: `llm.concurrency`. */
  private readonly llmSlots: Semaphore;
  private readonly intake: (ctx: PipelineContext) => Promise<void>;
  private readonly fullAnswer: (ctx: AnswerContext) => Promise<void>;
  /** The rest of an answer in parts that was partly delivered: no gates, balance or model. */
  private readonly restOfAnswer: (ctx: AnswerContext) => Promise<void>;
  /** Sends a fixed text as the answer, free (src/core/stages/free-reply.ts). */
  private readonly freeReply: (ctx: AnswerContext, reply: OutgoingReply) => Promise<void>;
  private readonly intakeTails = new Map<string, Promise<unknown>>();
  private readonly now: () => number;
  private readonly tools: ToolDefinition<PipelineContext>[];
  private accepting = true;
  /**
   * What the bot's features take beyond text and pictures (every feature's `accepts` together):
   * the channel hands over those updates and turns the rest away.
   */
  readonly accepts: AcceptedUpdates;
  /** Aborted when a drain runs out of time: model calls still running stop, queued answers do not start. */
  private readonly stopping = new AbortController();

  constructor(private readonly deps: PipelineDeps) {
    this.now = deps.now ?? Date.now;
    // Every model call in flight listens to the stop signal: as many as `llm.concurrency`.
    setMaxListeners(0, this.stopping.signal);
    const features = deps.features ?? [];
    this.tools = features.flatMap((f) => f.tools ?? []);
    this.accepts = deps.accepts ?? (Object.assign({}, ...features.map((f) => f.accepts ?? {})) as AcceptedUpdates);
    // `llm.concurrency` bounds model calls, not whole answers: delivery and settle of one answer
    // must not hold a model slot. Conversations in progress are bounded more loosely.
    this.llmSlots = new Semaphore(deps.bot.llm.concurrency);
    this.queue = new KeyedQueue(Math.max(64, deps.bot.llm.concurrency * 4), (error, key) =>
      deps.logger.error({ err: error, thread_key: key }, "pipeline task crashed"),
    );
    const { store, fence, bot } = deps;
    const stopping = this.stopping.signal;
    const retryBaseMs = deps.storageRetryBaseMs ?? 200;
    this.freeReply = freeReplySender({ store, channel: deps.channel, now: this.now });
    const freeReply = this.freeReply;
    const boundary = boundaryStage({ store, fence, stopping });
    const deliver = deliverStage({ store, channel: deps.channel, fence, stopping, leaseFresh: deps.leaseFresh });
    const settle = settleStage({ store, fence, now: this.now, retryBaseMs });
    const notify = notifyStage({ notifier: deps.notifier, now: this.now });
    this.fullAnswer = compose<AnswerContext>([
      albumStage({ store, now: this.now, windowMs: deps.albumWindowMs }),
      // Before the gates: a gate that reads the text (coaching) sees the transcript.
      transcribeStage({ bot, store, llm: deps.llm, audio: deps.audio, fence, signal: stopping }),
      ...features.flatMap((f) => (f.gate ? [f.gate] : [])),
      visionStage({ bot, store, fence, freeReply }),
      balanceStage({ bot, store, fence, freeReply }),
      boundary,
      contextStage({ bot, store, now: this.now, images: deps.images, stopping, channel: deps.channel }),
      generateStage({ bot, llm: deps.llm, slots: this.llmSlots, stopping, channel: deps.channel }),
      deliver,
      settle,
      notify,
    ]);
    this.restOfAnswer = compose<AnswerContext>([boundary, standingChargeStage({ store }), deliver, settle, notify]);
    // Intake statements ride a short database blip only ({@link INTAKE_BLIP_MS}).
    const retries = retriesWithin(retryBaseMs, INTAKE_BLIP_MS);
    this.intake = compose<PipelineContext>([
      // Dedupe is the record stage's insert: the unique (bot, dedupe_key) index turns a resent
      // update into `duplicate` without a read of its own (one statement less per message).
      spamStage({ bot, store, now: this.now, retryBaseMs, retries }),
      recordStage({
        store,
        retryBaseMs,
        retries,
        // Recorded by another instance and not answered yet: it comes before what follows it.
        onDuplicate: deps.recordOnly ? undefined : (ctx) => this.catchUpThread(ctx),
      }),
    ]);
  }

  /**
   * Queues the answer of a recorded message behind the earlier ones of its thread.
   * @returns false when it is queued, being answered or lately finished here already
   */
  private enqueue(ctx: AnswerContext): boolean {
    const id = ctx.id;
    // Queued once: the owner's inbox sweep and this process's intake may both find a new row.
    if (this.queued.has(id) || this.done.has(id)) return false;
    this.queued.add(id);
    this.queue.push(ctx.msg.threadKey, async () => {
      const t = performance.now();
      try {
        // After the drain deadline nothing new starts: the message stays `received`, unreserved.
        if (this.stopping.signal.aborted) ctx.outcome = "interrupted";
        else ctx = await this.answerThroughOutages(ctx);
      } catch (error) {
        if (!(error instanceof FencedError)) {
          // Not settled (the row may still be `received`, maybe reserved): parked, then the inbox sweep resumes it.
          ctx.answer.stranded = true;
          throw error;
        }
        // Another instance owns the bot now: nothing was written; its recovery and inbox answer the message.
        ctx.outcome = "fenced";
        ctx.log.error({ epoch: error.epoch }, "lost ownership of this bot: answer abandoned without writing (the new owner answers it)");
        this.deps.onFenced?.(error);
      } finally {
        this.queued.delete(id);
        if (ctx.answer.stranded) this.park(id, ctx);
        else {
          this.parked.delete(id);
          this.done.add(id);
        }
        if (ctx.outcome === "interrupted") this.interrupted++;
        ctx.timings.answer = performance.now() - t;
        this.deps.onOutcome?.(ctx);
      }
    });
    return true;
  }

  /**
   * Answers a queued message. When the database went away in the middle and the attempt could
   * not even be recorded as failed (the row is still `received`, a reservation may be open), the
   * attempt is repeated once the database answers again: the reservation is given back first,
   * then the message is answered from the start. The thread's later messages wait meanwhile, so
   * its order holds. A stop ends the wait (the next start's recovery refunds and resumes).
   * "The database away" is what {@link isRetryableStorageError} says: unreachable, connection
   * lost, busy, disk full, read-only, I/O error. A resumed message (recovery, inbox sweep,
   * catch-up) first gives back a reservation an earlier attempt of this process left open.
   * @returns the context of the last attempt
   */
  private async answerThroughOutages(first: AnswerContext): Promise<AnswerContext> {
    let ctx = first;
    let waitMs = this.deps.storageRetryBaseMs ?? 200;
    // A resumed row may carry an earlier attempt's open reservation (an attempt stranded by a
    // failure that could not be recorded): this pipeline holds the row now, so no attempt of it
    // is in flight; give that reservation back before reserving again.
    let giveBack = ctx.answer.resumed === true;
    let pause = false;
    for (;;) {
      while (giveBack) {
        if (pause) {
          await sleep(waitMs, this.stopping.signal);
          waitMs = Math.min(30_000, waitMs * 2);
          if (this.stopping.signal.aborted) {
            ctx.outcome = "interrupted";
            return ctx;
          }
        }
        pause = true;
        try {
          await this.giveBackEarlierAttempt(ctx);
          giveBack = false;
        } catch (error) {
          if (error instanceof FencedError || !isRetryableStorageError(error)) throw error;
          ctx.log.warn({ err: error, wait_ms: waitMs }, "database still unavailable");
        }
      }
      ctx.answer.throughOutages = true;
      try {
        await this.answer(ctx);
        if (!ctx.answer.unrecorded) return ctx;
      } catch (error) {
        // A reservation or a gate's read that failed before the boundary: same as unrecorded.
        if (error instanceof FencedError || ctx.delivery || !isRetryableStorageError(error)) throw error;
        ctx.error = error;
      }
      ctx.log.warn({ wait_ms: waitMs }, "database unavailable during the answer; answering again once it is back (later messages of this thread wait)");
      giveBack = true;
      pause = true;
      const next = this.answerContext(this.newContext(ctx.msg), ctx.id);
      next.stored = ctx.stored;
      next.log = ctx.log;
      const { resumed, claimTried, sendStarted, charged } = ctx.answer;
      next.answer.resumed = resumed;
      next.answer.earlier = { claimTried, sendStarted, charged };
      ctx = next;
    }
  }

  /**
   * Undoes what an earlier attempt of a message left that no answer followed: its open
   * reservation (if written; its commit may have been lost) is refunded, and its `delivering`
   * claim, if that committed before the send started, is put back to `received`.
   * @throws the storage error when the database is still away
   */
  private async giveBackEarlierAttempt(ctx: AnswerContext): Promise<void> {
    const earlier = ctx.answer.earlier;
    // Not for the rest of an answer in parts: the delivered parts keep their charge.
    const charged = earlier?.charged === true || (ctx.stored?.parts_sent ?? 0) > 0;
    const open = charged ? undefined : await this.deps.store.balance.openReservation(ctx.id);
    if (open) await this.deps.store.balance.refund(open, "database outage: answered again", this.deps.fence);
    // Its claim or mark, if that committed: no request was written (a mark that failed cancels
    // its request), so the message is resumable again.
    if (earlier?.claimTried && !earlier.sendStarted)
      await this.deps.store.messages.setStatus(ctx.id, charged ? "partial" : "received", { from: ["sending", "delivering"], fence: this.deps.fence });
  }

  /**
   * Keeps a message whose answer ended unsettled (its failure could not be recorded) out of the
   * inbox sweep for a while, longer each time (1 s, doubling to 60 s); then the sweep finds the
   * row still `received` and resumes it, and the resumed attempt gives back what this one left.
   * After {@link MAX_PARKED_TRIES} such ends it is left to the next start.
   */
  private park(id: number, ctx: AnswerContext): void {
    const times = (this.parked.get(id)?.times ?? 0) + 1;
    if (times > MAX_PARKED_TRIES) {
      // Not a passing outage: stop trying here; the next start's recovery (or bots replay) takes it.
      this.parked.delete(id);
      this.done.add(id);
      ctx.log.error({ tries: times - 1 }, "answer still unsettled after repeated tries; left `received` for the next start's recovery or bots replay");
      return;
    }
    const delayMs = Math.min(60_000, 1000 * 2 ** (times - 1));
    this.parked.set(id, { until: performance.now() + delayMs, times });
    if (this.parked.size > RECENT_DONE) this.parked.delete(this.parked.keys().next().value!);
    ctx.log.warn({ retry_in_ms: delayMs }, "answer left unsettled (received, maybe reserved); answered again after a pause");
  }

  /** Messages whose answer ended unsettled, with when the sweep may take them again (performance.now ms). */
  private readonly parked = new Map<number, { until: number; times: number }>();

  /**
   * Queues an already stored incoming message (`received`, found by recovery after a crash or
   * restart) for an answer, exactly like a live one: behind the messages of its thread queued
   * before it, ahead of those queued after. Recovery calls it before the channel receives
   * anything, so resumed messages come first, in the order given (arrival order).
   */
  resume(row: MessageRow): boolean {
    const ctx = this.storedContext(row);
    // Never answered, not even with `empty_reply`: it may still get that one.
    ctx.answer.resumed = true;
    return this.enqueue(ctx);
  }

  /**
   * Scale-out catch-up (see {@link PipelineDeps.catchUp}): resumes the thread's `received` rows
   * recorded before `beforeId` (all of them without it) that this pipeline does not hold, in id
   * order, by the same rule as recovery and the inbox sweep ({@link resumeReceived}: rows past
   * `recovery.resume_within` expire). A failed read or write is logged and skipped: the message
   * itself is recorded, and the sweep finds the rest later.
   */
  private async catchUpThread(ctx: PipelineContext, beforeId?: number): Promise<void> {
    if (!this.deps.catchUp?.()) return;
    try {
      const rows = await this.deps.store.messages.receivedInThread(this.deps.bot.name, ctx.msg.threadKey, beforeId);
      if (!rows.length) return;
      const done = await resumeReceived({ bot: this.deps.bot, store: this.deps.store, pipeline: this, now: this.now, fence: this.deps.fence }, rows);
      if (done.resumedIds.length || done.expired)
        ctx.log.info({ queued: done.resumedIds, expired: done.expired }, "earlier messages of the thread, recorded elsewhere, queued first");
    } catch (error) {
      if (error instanceof FencedError) this.deps.onFenced?.(error);
      ctx.log.warn({ err: error }, "could not catch up on the thread's earlier messages; the inbox sweep queues them");
    }
  }

  private storedContext(row: MessageRow): AnswerContext {
    const ctx = this.answerContext(this.newContext(messageFromRow(row)), row.id);
    ctx.stored = row;
    ctx.log = this.deps.logger.child({ msg_id: row.id, thread_key: row.thread_key });
    return ctx;
  }

  /** Answers waiting or in flight. */
  get backlog(): number {
    return this.queue.size;
  }

  /** Answers being worked on now (the rest of {@link backlog} waits for its turn). */
  get answersInFlight(): number {
    return this.queue.inFlight;
  }

  /**
   * Hands a message to the pipeline. Resolves once it is recorded (or found a duplicate, or
   * filtered); the answer is produced later. Messages of one thread key keep their order.
   * @throws StorageError when it could not be recorded (the channel should not acknowledge it)
   */
  submit(msg: IncomingMessage): Promise<IntakeResult> {
    if (!this.accepting) return Promise.reject(new StorageError("PIPELINE_STOPPED", "pipeline is stopping; message not taken"));
    const key = msg.threadKey;
    const prev = this.intakeTails.get(key) ?? Promise.resolve();
    const ctx = this.newContext(msg);
    const run = prev.then(async (): Promise<IntakeResult> => {
      const t0 = performance.now();
      await this.intake(ctx);
      const id = ctx.id;
      // Not recorded now: a duplicate (recorded before, not stored again).
      if (id === undefined) {
        this.deps.onIntake?.(ctx);
        return { status: "duplicate" };
      }
      if (ctx.filtered) {
        this.deps.onIntake?.(ctx);
        return { status: "filtered", id, reason: ctx.filtered };
      }
      // Recorded `received`: queued behind the thread's earlier messages (in record-only mode
      // left for the owner).
      ctx.timings.intake = performance.now() - t0;
      if (!this.deps.recordOnly) {
        const recorded = this.answerContext(ctx, id);
        await this.catchUpThread(recorded, id);
        this.enqueue(recorded);
      }
      this.deps.onIntake?.(ctx);
      return { status: "queued", id };
    });
    const tail = run.catch(() => undefined);
    this.intakeTails.set(key, tail);
    void tail.then(() => {
      if (this.intakeTails.get(key) === tail) this.intakeTails.delete(key);
    });
    return run;
  }

  /**
   * Answers an already stored incoming message now, bypassing the queue (used by replay).
   * Runs gates, balance, model, delivery and settle exactly as for a live message. The message
   * is claimed through its status, so it is never answered twice; `force` sends even when it
   * was answered (or is being answered) already. `empty_reply` is not sent again on replay.
   */
  async answerStored(row: MessageRow, opts: { force?: boolean } = {}): Promise<AnswerContext> {
    const ctx = this.storedContext(row);
    if (opts.force) ctx.answer.force = true;
    await this.answer(ctx);
    return ctx;
  }

  /**
   * Runs the answer stages: all of them, or, for a stored message whose answer in parts was
   * partly delivered (`parts_sent` > 0 and the answer kept in `delivery`), only delivery of the
   * missing parts of that same text, settle and notify (the charge was made with the first
   * parts and stands).
   */
  private answer(ctx: AnswerContext): Promise<void> {
    const row = ctx.stored;
    const partsSent = row?.parts_sent ?? 0;
    const rest = row && partsSent > 0 ? partialAnswer(row) : null;
    if (!rest) return this.fullAnswer(ctx);
    ctx.answer.fromPart = partsSent;
    ctx.answer.charged = true;
    ctx.completion = {
      text: rest.text,
      model: rest.model,
      usage: { prompt_tokens: rest.prompt_tokens, completion_tokens: rest.completion_tokens },
      latencyMs: rest.latency_ms,
      toolCalls: [],
    };
    return this.restOfAnswer(ctx);
  }

  /**
   * True while this pipeline has the stored message `id` queued or being answered, or finished
   * it lately (a sweep that read the row before the answer was stored must not queue it again).
   */
  holds(id: number): boolean {
    if (this.queued.has(id) || this.done.has(id)) return true;
    const p = this.parked.get(id);
    return p !== undefined && performance.now() < p.until;
  }

  /** Ids of stored messages queued or being answered here. */
  private readonly queued = new Set<number>();
  /** Ids answered (or given up) here lately: the last {@link RECENT_DONE} of them. */
  private readonly done = new RecentIds(RECENT_DONE);

  /** Resolves when every queued answer is done. */
  onIdle(): Promise<void> {
    return this.queue.onIdle();
  }

  /**
   * Stops taking messages and lets answers finish, at most `timeoutMs`. Then it aborts the
   * model calls still running (their reservations are refunded and their messages stay
   * `received`), lets queued answers end without starting, and waits at most `settleMs` more
   * for answers already being delivered, which are never cut off halfway.
   * @param timeoutMs ms
   * @param settleMs ms @defaultValue 5000
   * @returns how many answers did not finish (`received`, answered by the next start's recovery)
   */
  async drain(timeoutMs: number, settleMs = 5000): Promise<number> {
    this.accepting = false;
    await Promise.all([...this.intakeTails.values()]);
    const ac = new AbortController();
    await Promise.race([this.queue.onIdle(), sleep(timeoutMs, ac.signal)]);
    ac.abort();
    if (this.queue.size === 0) return 0;
    const before = this.interrupted;
    this.stopping.abort(new StopError());
    const late = new AbortController();
    await Promise.race([this.queue.onIdle(), sleep(settleMs, late.signal)]);
    late.abort();
    return this.interrupted - before + this.queue.size;
  }

  /** Answers a stop interrupted so far. */
  private interrupted = 0;

  private newContext(msg: IncomingMessage): PipelineContext {
    const ctx: PipelineContext = {
      msg,
      bot: this.deps.bot,
      log: this.deps.logger.child({ thread_key: msg.threadKey }),
      botLog: this.deps.logger,
      tools: this.tools,
      state: {},
      reply: {},
      promptSections: [],
      timings: {},
    };
    ctx.fence = this.deps.fence;
    return ctx;
  }

  /**
   * The context of a recorded message (stored row `id`) to be answered: the same object, with
   * the id and a fresh {@link AnswerState}, and the free reply gates may send.
   */
  private answerContext(ctx: PipelineContext, id: number): AnswerContext {
    const answer: AnswerState = {};
    const recorded: AnswerContext = Object.assign(ctx, { id, answer });
    recorded.sendFreeReply = (reply) => this.freeReply(recorded, typeof reply === "string" ? { text: reply } : reply);
    return recorded;
  }
}

/**
 * How long intake rides a database blip, ms: each intake statement (spam read, record) is
 * retried with back-off doubling from `storageRetryBaseMs` (200, 400, 800, 1600 ms by default)
 * until about this long has passed. Intake fails after that, so a webhook or callback gets its
 * 503 with `Retry-After` while the sender still waits, and polling keeps its offset and backs off
 * itself, instead of holding the update for many seconds.
 */
const INTAKE_BLIP_MS = 3000;

/** Retries of a back-off doubling from `baseMs` whose waits add up to at least `budgetMs`. */
function retriesWithin(baseMs: number, budgetMs: number): number {
  let n = 0;
  while (baseMs * (2 ** n - 1) < budgetMs && n < 20) n++;
  return n;
}

/** How often an answer that ends unsettled is resumed in-process before it is left to the next start. */
const MAX_PARKED_TRIES = 5;
/** How many finished message ids a pipeline remembers ({@link Pipeline.holds}). */
const RECENT_DONE = 4096;
