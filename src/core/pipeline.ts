import { setMaxListeners } from "node:events";
import type { Logger } from "pino";
import type { BotConfig } from "../config/schema.js";
import { describeError, FencedError, StorageError, UnconfirmedSendError } from "../errors.js";
import type { ChatMessage, LlmClient, ToolDefinition } from "../llm/client.js";
import { loadPrompt, renderPrompt } from "../llm/prompt.js";
import type { Store } from "../storage/index.js";
import { formatCredits } from "../storage/balance.js";
import { isRetryableStorageError } from "../storage/faults.js";
import { partialAnswer, type MessageRow } from "../storage/messages.js";
import type { IncomingStatus, PartialAnswer } from "../storage/schema.js";
import type { OwnerFence } from "../storage/owners.js";
import { albumStage } from "./albums.js";
import { compose, type Middleware } from "../lib/compose.js";
import { completeWithImages, loadImages, storedImages, withPlaceholder, type ImageFetcher, type ImageRef, type LoadedImages } from "./images.js";
import { KeyedQueue, Semaphore } from "./queue.js";
import { sleep, withRetries } from "../lib/retry.js";
import { RecentIds } from "../lib/recent-ids.js";
import { resumeReceived } from "./recovery.js";
import { spamVerdict } from "./spam.js";
import type { ChannelSender, DeliveryTarget, IncomingMessage, Notifier, PipelineContext, SendProgress } from "./types.js";

/**
 * A feature plugged into the pipeline by the bot's config: gates run before the
 * balance is touched (a gate that does not call `next` stops the message), tools are offered to
 * the model.
 */
export interface Feature {
  name: string;
  gate?: Middleware<PipelineContext>;
  tools?: ToolDefinition<PipelineContext>[];
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
}

/**
 * What happened at intake, each a positive result that allows the channel to acknowledge the
 * update: `queued` — recorded (`received`) and queued for an answer (in record-only mode left for
 * the owner); `filtered` — recorded as `filtered` by the spam rules; `duplicate` — recorded
 * before (the unique dedupe key). Anything else is a throw: not recorded, not to be acknowledged.
 */
export type IntakeResult = { status: "duplicate" } | { status: "filtered"; id: number; reason: string } | { status: "queued"; id: number };

/** The stored meta of an incoming message: what is needed to answer it later. */
export interface StoredMeta {
  kind: IncomingMessage["kind"];
  target?: Record<string, unknown>;
  vars?: Record<string, string>;
  images?: ImageRef[];
  /** Album (`IncomingMessage.group`). */
  group?: string;
  /** A button press (`IncomingMessage.button`), so a resumed press is still a press. */
  button?: { data: string };
  /** A membership change (`IncomingMessage.membership`), so recovery never sends it to the model as text. */
  membership?: "blocked" | "unblocked";
}

/**
 * The channel-agnostic pipeline (docs/architecture.md, one message's path): spam → record (the insert dedupes on the unique key), then (queued per thread key)
 * gates → balance → context → generate → deliver → settle → notify.
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
  private readonly fullAnswer: (ctx: PipelineContext) => Promise<void>;
  /** The rest of an answer in parts that was partly delivered: no gates, balance or model. */
  private readonly restOfAnswer: (ctx: PipelineContext) => Promise<void>;
  private readonly intakeTails = new Map<string, Promise<unknown>>();
  private readonly now: () => number;
  private readonly tools: ToolDefinition<PipelineContext>[];
  private accepting = true;
  /** Aborted when a drain runs out of time: model calls still running stop, queued answers do not start. */
  private readonly stopping = new AbortController();

  constructor(private readonly deps: PipelineDeps) {
    this.now = deps.now ?? Date.now;
    // Every model call in flight listens to the stop signal: as many as `llm.concurrency`.
    setMaxListeners(0, this.stopping.signal);
    const features = deps.features ?? [];
    this.tools = features.flatMap((f) => f.tools ?? []);
    // `llm.concurrency` bounds model calls, not whole answers: delivery and settle of one answer
    // must not hold a model slot. Conversations in progress are bounded more loosely.
    this.llmSlots = new Semaphore(deps.bot.llm.concurrency);
    this.queue = new KeyedQueue(Math.max(64, deps.bot.llm.concurrency * 4), (error, key) =>
      deps.logger.error({ err: error, thread_key: key }, "pipeline task crashed"),
    );
    const answerStages: Middleware<PipelineContext>[] = [
      albumStage({ store: deps.store, now: this.now, windowMs: deps.albumWindowMs }),
      ...features.flatMap((f) => (f.gate ? [f.gate] : [])),
      this.visionGate,
      this.balanceGate,
      this.boundary,
      this.context,
      this.generate,
      this.deliver,
      this.settle,
      this.notify,
    ];
    this.fullAnswer = compose(answerStages);
    this.restOfAnswer = compose([this.boundary, this.standingCharge, this.deliver, this.settle, this.notify]);
    this.intake = compose<PipelineContext>([
      // Dedupe is the record stage's insert: the unique (bot, dedupe_key) index turns a resent
      // update into `duplicate` without a read of its own (one statement less per message).
      this.spam,
      this.record,
      async (ctx) => {
        ctx.timings.intake = performance.now() - (ctx.state.t0 as number);
        if (deps.recordOnly) return;
        await this.catchUpThread(ctx, ctx.id);
        this.enqueue(ctx);
      },
    ]);
  }

  /**
   * Queues the answer of a recorded message behind the earlier ones of its thread.
   * @returns false when it is queued, being answered or lately finished here already
   */
  private enqueue(ctx: PipelineContext): boolean {
    const id = ctx.id!;
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
          ctx.state.stranded = true;
          throw error;
        }
        // Another instance owns the bot now: nothing was written; its recovery and inbox answer the message.
        ctx.outcome = "fenced";
        ctx.log.error({ epoch: error.epoch }, "lost ownership of this bot: answer abandoned without writing (the new owner answers it)");
        this.deps.onFenced?.(error);
      } finally {
        this.queued.delete(id);
        if (ctx.state.stranded) this.park(id, ctx);
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
  private async answerThroughOutages(first: PipelineContext): Promise<PipelineContext> {
    let ctx = first;
    let waitMs = this.deps.storageRetryBaseMs ?? 200;
    // A resumed row may carry an earlier attempt's open reservation (an attempt stranded by a
    // failure that could not be recorded): this pipeline holds the row now, so no attempt of it
    // is in flight; give that reservation back before reserving again.
    let giveBack = ctx.state.resumed === true;
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
      ctx.state.throughOutages = true;
      try {
        await this.answer(ctx);
        if (!ctx.state.unrecorded) return ctx;
      } catch (error) {
        // A reservation or a gate's read that failed before the boundary: same as unrecorded.
        if (error instanceof FencedError || ctx.delivery || !isRetryableStorageError(error)) throw error;
        ctx.error = error;
      }
      ctx.log.warn({ wait_ms: waitMs }, "database unavailable during the answer; answering again once it is back (later messages of this thread wait)");
      giveBack = true;
      pause = true;
      const next = this.newContext(ctx.msg);
      next.id = ctx.id;
      next.stored = ctx.stored;
      next.log = ctx.log;
      next.state.resumed = ctx.state.resumed;
      next.state.earlier = { claimTried: ctx.state.claimTried, sendStarted: ctx.state.sendStarted, charged: ctx.state.charged };
      ctx = next;
    }
  }

  /**
   * Undoes what an earlier attempt of a message left that no answer followed: its open
   * reservation (if written; its commit may have been lost) is refunded, and its `delivering`
   * claim, if that committed before the send started, is put back to `received`.
   * @throws the storage error when the database is still away
   */
  private async giveBackEarlierAttempt(ctx: PipelineContext): Promise<void> {
    const earlier = ctx.state.earlier as { claimTried?: boolean; sendStarted?: boolean; charged?: boolean } | undefined;
    // Not for the rest of an answer in parts: the delivered parts keep their charge.
    const charged = earlier?.charged === true || (ctx.stored?.parts_sent ?? 0) > 0;
    const open = charged ? undefined : await this.deps.store.balance.openReservation(ctx.id!);
    if (open) await this.deps.store.balance.refund(open, "database outage: answered again", this.deps.fence);
    // Its claim or mark, if that committed: no request was written (a mark that failed cancels
    // its request), so the message is resumable again.
    if (earlier?.claimTried && !earlier.sendStarted)
      await this.deps.store.messages.setStatus(ctx.id!, charged ? "partial" : "received", { from: ["sending", "delivering"], fence: this.deps.fence });
  }

  /**
   * Keeps a message whose answer ended unsettled (its failure could not be recorded) out of the
   * inbox sweep for a while, longer each time (1 s, doubling to 60 s); then the sweep finds the
   * row still `received` and resumes it, and the resumed attempt gives back what this one left.
   * After {@link MAX_PARKED_TRIES} such ends it is left to the next start.
   */
  private park(id: number, ctx: PipelineContext): void {
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
    ctx.state.resumed = true;
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

  private storedContext(row: MessageRow): PipelineContext {
    const ctx = this.newContext(messageFromRow(row));
    ctx.id = row.id;
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
      ctx.state.t0 = performance.now();
      await this.intake(ctx);
      this.deps.onIntake?.(ctx);
      if (ctx.outcome === "duplicate") return { status: "duplicate" };
      if (ctx.filtered) return { status: "filtered", id: ctx.id!, reason: ctx.filtered };
      return { status: "queued", id: ctx.id! };
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
  async answerStored(row: MessageRow, opts: { force?: boolean } = {}): Promise<PipelineContext> {
    const ctx = this.storedContext(row);
    if (opts.force) ctx.state.force = true;
    await this.answer(ctx);
    return ctx;
  }

  /**
   * Runs the answer stages: all of them, or, for a stored message whose answer in parts was
   * partly delivered (`parts_sent` > 0 and the answer kept in `delivery`), only delivery of the
   * missing parts of that same text, settle and notify (the charge was made with the first
   * parts and stands).
   */
  private answer(ctx: PipelineContext): Promise<void> {
    const row = ctx.stored;
    const rest = row && (row.parts_sent ?? 0) > 0 ? partialAnswer(row) : null;
    if (!rest) return this.fullAnswer(ctx);
    ctx.state.partial = rest;
    ctx.state.fromPart = row!.parts_sent;
    ctx.state.charged = true;
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
      tools: this.tools,
      state: {},
      timings: {},
    };
    ctx.sendFreeReply = (text) => this.sendEmptyReply(ctx, text);
    ctx.fence = this.deps.fence;
    return ctx;
  }

  /** Retries of each intake statement: {@link INTAKE_BLIP_MS} of back-off. */
  private get intakeRetries(): number {
    return retriesWithin(this.deps.storageRetryBaseMs ?? 200, INTAKE_BLIP_MS);
  }

  /** Retries a storage operation through short outages (connection refused, lock waits). */
  private storageRetry<T>(fn: () => Promise<T>, log: Logger, retries = 6): Promise<T> {
    return withRetries(fn, {
      retries,
      baseMs: this.deps.storageRetryBaseMs ?? 200,
      maxMs: 5000,
      classify: (e) => ({ retry: isRetryableStorageError(e) }),
      onRetry: (e, attempt, waitMs) => log.warn({ err: e, attempt, wait_ms: Math.round(waitMs) }, "database unavailable, retrying"),
    });
  }

  // --- stage 2: spam ----------------------------------------------------------------------
  private readonly spam: Middleware<PipelineContext> = async (ctx, next) => {
    const reason = await this.storageRetry(
      () => spamVerdict(this.deps.bot.spam, this.deps.store.messages, { bot: ctx.msg.bot, userId: ctx.msg.userId, text: ctx.msg.text }, this.now()),
      ctx.log,
      this.intakeRetries,
    );
    if (reason) ctx.filtered = reason;
    await next();
  };

  // --- stage 3: record --------------------------------------------------------------------
  private readonly record: Middleware<PipelineContext> = async (ctx, next) => {
    const m = ctx.msg;
    const meta: StoredMeta = {
      kind: m.kind,
      ...(m.target ? { target: m.target } : {}),
      ...(m.vars ? { vars: m.vars } : {}),
      ...(m.images?.length ? { images: m.images } : {}),
      ...(m.group ? { group: m.group } : {}),
      ...(m.button ? { button: m.button } : {}),
      ...(m.membership ? { membership: m.membership } : {}),
    };
    const id = await this.storageRetry(
      () =>
        this.deps.store.messages.insertIncoming({
          bot: m.bot,
          channel: m.channel,
          thread_key: m.threadKey,
          chat_id: m.chatId,
          user_id: m.userId,
          user_name: m.userName,
          text: m.text,
          dedupe_key: m.dedupeKey,
          channel_message_id: m.channelMessageId,
          meta: meta as unknown as Record<string, unknown>,
          status: ctx.filtered ? "filtered" : "received",
          error: ctx.filtered ?? null,
          created_ms: m.receivedMs,
        }),
      ctx.log,
      this.intakeRetries,
    );
    if (id === null) {
      ctx.outcome = "duplicate";
      ctx.log.debug({ dedupe_key: m.dedupeKey }, "duplicate dropped");
      // Recorded by another instance and not answered yet: it comes before what follows it.
      if (!this.deps.recordOnly) await this.catchUpThread(ctx);
      return;
    }
    ctx.id = id;
    ctx.log = ctx.log.child({ msg_id: id });
    if (ctx.filtered) {
      ctx.outcome = "filtered";
      ctx.log.info({ reason: ctx.filtered, user_id: m.userId }, "message filtered");
      return;
    }
    // One info line per outcome: an answered message's is "answer delivered" (settle), others have their own.
    ctx.log.debug({ user_id: m.userId, chars: m.text.length }, "message received");
    await next();
  };

  // --- stage 4: balance gate -------------------------------------------------------------
  private readonly balanceGate: Middleware<PipelineContext> = async (ctx, next) => {
    const { account, cost_per_reply, stop_below, empty_reply } = this.deps.bot.balance;
    const cost = Math.round(cost_per_reply * 100);
    if (cost > 0) {
      ctx.reservation = await this.deps.store.balance.reserve(account, cost, Math.round(stop_below * 100), ctx.id!, this.deps.fence);
      if (!ctx.reservation) {
        ctx.outcome = "no_balance";
        await this.deps.store.messages.setStatus(ctx.id!, "no_balance", { error: `account ${account} cannot pay ${cost / 100}`, fence: this.deps.fence });
        ctx.log.warn({ account }, "balance cannot pay a reply; message kept for replay");
        if (empty_reply && (!ctx.stored || ctx.state.resumed)) await this.sendEmptyReply(ctx, empty_reply);
        return;
      }
      ctx.log.debug({ account, cost_credits: formatCredits(cost), balance_after_credits: formatCredits(ctx.reservation.balance_after) }, "cost reserved");
    }
    await next();
  };

  // --- picture without text while llm.vision is off ---------------------------------------
  private readonly visionGate: Middleware<PipelineContext> = async (ctx, next) => {
    const { enabled, no_vision_reply } = this.deps.bot.llm.vision;
    if (enabled || !ctx.msg.images?.length || ctx.msg.text.trim()) return next();
    ctx.outcome = "skipped";
    await this.deps.store.messages.setStatus(ctx.id!, "skipped", {
      error: "picture without text; llm.vision is off",
      from: ["received", "failed", "no_balance", "expired"],
      fence: this.deps.fence,
    });
    ctx.log.info(
      { images: ctx.msg.images.length, no_vision_reply: no_vision_reply !== null },
      "picture without text and llm.vision.enabled is false; not answered by the model",
    );
    if (no_vision_reply && (!ctx.stored || ctx.state.resumed)) await this.sendEmptyReply(ctx, no_vision_reply);
  };

  private async sendEmptyReply(ctx: PipelineContext, text: string): Promise<void> {
    try {
      const d = await this.deps.channel.send(this.targetOf(ctx), text);
      await this.deps.store.messages.recordOutgoing({
        incoming: this.incomingRef(ctx),
        text,
        channel_message_id: d.channelMessageId,
        model: null,
        prompt_tokens: null,
        completion_tokens: null,
        cost: 0,
        latency_ms: null,
        created_ms: this.now(),
      });
    } catch (error) {
      // Never sent again: a request that may have arrived is not retried by the channel either.
      if (error instanceof UnconfirmedSendError)
        ctx.log.warn({ err: error }, "free reply (empty_reply, expired_reply) unconfirmed: the connection failed after it was sent; not sent again");
      else ctx.log.warn({ err: error }, "free reply (empty_reply, expired_reply) could not be sent");
    }
  }

  // --- boundary around model, delivery and settle -----------------------------------------
  private readonly boundary: Middleware<PipelineContext> = async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      // Lost the bot: write nothing more (the new owner's recovery refunds and answers).
      if (error instanceof FencedError) throw error;
      if (this.stopping.signal.aborted && !ctx.delivery) {
        // The drain deadline cut the model call (or a wait) short: give the money back and leave
        // the message `received`, so the next start answers it. Nothing stays reserved.
        ctx.outcome = "interrupted";
        try {
          if (ctx.reservation && !ctx.state.charged) await this.deps.store.balance.refund(ctx.reservation, "stopped before answering", this.deps.fence);
          await this.deps.store.messages.setStatus(ctx.id!, ctx.state.charged ? "partial" : "received", {
            from: ["received", "sending"],
            fence: this.deps.fence,
          });
        } catch (storageError) {
          ctx.log.error({ err: storageError }, "could not record the interruption; the next start's recovery refunds it");
        }
        ctx.log.info("answer interrupted by the stop; reservation refunded, resumes at the next start");
        return;
      }
      if (ctx.state.throughOutages && ctx.state.claimTried && !ctx.state.sendStarted && isRetryableStorageError(error)) {
        // The database went away at the `delivering` claim (it may have committed): nothing was
        // sent. Not `failed`: answered again once the database answers (answerThroughOutages).
        // Replay and the 2GIS pass (answerStored) record `failed` as for any other error.
        ctx.log.warn({ err: error }, "database unavailable at the delivery claim; nothing sent");
        ctx.state.unrecorded = true;
        return;
      }
      const reason = describeError(error);
      if (ctx.delivery) {
        // Delivered but not stored: never send again; the charge stands, the row stays `delivering`.
        ctx.log.error({ err: error }, "answer delivered but could not be stored");
        ctx.outcome = "answered";
        return;
      }
      ctx.error = error;
      if (ctx.state.charged) {
        // The rest of an answer in parts: the parts delivered before keep their charge.
        ctx.outcome = "partial";
        ctx.log.warn({ err: error, reason }, "the rest of a partly delivered answer failed; the charge stands, bots replay --send sends the missing parts");
        try {
          await this.deps.store.messages.setStatus(ctx.id!, "partial", {
            error: reason.slice(0, 2000),
            from: ["sending", "delivering", "partial"],
            fence: this.deps.fence,
          });
        } catch (storageError) {
          if (storageError instanceof FencedError) throw storageError;
          ctx.log.error({ err: storageError }, "could not record the failure; the next start's recovery sends the missing parts");
        }
        return;
      }
      ctx.outcome = "failed";
      ctx.log.warn({ err: error, reason }, "answer failed; reservation refunded, message kept for replay");
      try {
        if (ctx.reservation) await this.deps.store.balance.refund(ctx.reservation, reason.slice(0, 255), this.deps.fence);
        // `delivering`: a channel without gated writes (2GIS) whose send failed, or a mark whose
        // request was cancelled unsent; a request that may have arrived never gets here.
        await this.deps.store.messages.setStatus(ctx.id!, "failed", {
          error: reason.slice(0, 2000),
          from: ["received", "sending", "delivering", "no_balance", "failed", "expired"],
          fence: this.deps.fence,
        });
      } catch (storageError) {
        if (storageError instanceof FencedError) throw storageError;
        ctx.log.error({ err: storageError }, "could not record the failure");
        // The database is away: the answer is tried again when it is back (answerThroughOutages).
        // Any other failure leaves the row unsettled: parked, then resumed by the inbox sweep.
        if (isRetryableStorageError(storageError)) ctx.state.unrecorded = true;
        else ctx.state.stranded = true;
      }
    }
  };

  // --- stage 5: context --------------------------------------------------------------------
  private readonly context: Middleware<PipelineContext> = async (ctx, next) => {
    ctx.prompt = await buildPrompt(this.deps.bot, this.deps.store, ctx.msg, ctx.id!, this.now());
    // Pictures are fetched now, not when received: a replay or a recovery fetches them again.
    ctx.state.images = await loadImages(this.deps.bot, ctx.msg.images, this.deps.images, ctx.log, this.stopping.signal);
    await next();
  };

  // --- stage 6: generate -------------------------------------------------------------------
  private readonly generate: Middleware<PipelineContext> = async (ctx, next) => {
    const queued = performance.now();
    const signal = this.stopping.signal;
    ctx.completion = await this.llmSlots.run(() => {
      ctx.timings.modelWait = performance.now() - queued;
      if (signal.aborted) throw new StopError();
      return completeWithImages(
        this.deps.llm,
        this.deps.bot,
        ctx.prompt!,
        (ctx.state.images as LoadedImages | undefined) ?? { parts: [], left: 0 },
        { tools: ctx.tools, context: ctx, signal },
        ctx.log,
      );
    });
    ctx.log.debug({ model: ctx.completion.model, ...ctx.completion.usage, latency_ms: ctx.completion.latencyMs }, "model answered");
    await next();
  };

  // --- the rest of an answer in parts: its charge ------------------------------------------
  private readonly standingCharge: Middleware<PipelineContext> = async (ctx, next) => {
    // The reservation made with the first parts stands; settle records it as the answer's cost.
    ctx.reservation = (await this.deps.store.balance.openReservation(ctx.id!)) ?? null;
    await next();
  };

  // --- stage 7: deliver --------------------------------------------------------------------
  private readonly deliver: Middleware<PipelineContext> = async (ctx, next) => {
    // A stop that came while the model answered: do not start sending now.
    if (this.stopping.signal.aborted) throw new StopError();
    // A stored message answered again (recovery, replay, a retried review): where the channel
    // can tell, make sure an earlier attempt did not land after all.
    if (ctx.stored && !ctx.state.force && this.deps.channel.checkDelivered) {
      const found = await this.deps.channel.checkDelivered(this.targetOf(ctx));
      if (found.delivered) {
        ctx.log.info("an earlier answer is already on the channel; recorded instead of sending again");
        ctx.delivery = { channelMessageId: found.channelMessageId };
        ctx.completion = { ...ctx.completion!, text: found.text };
        return next();
      }
    }
    await this.untilLeaseFresh(ctx);
    const fence = this.deps.fence;
    const gated = this.deps.channel.gatesWrites === true;
    // The claim. With gated writes it is `sending`: nothing is written yet, and a process that
    // dies here leaves the answer resumable; each request is marked `delivering` right before
    // its bytes go out (progress.beforeWrite). A channel without gated writes (2GIS, which can be
    // asked later) is marked `delivering` at once. Until something may have reached the channel
    // (`sendStarted`: a part delivered, a request that may have arrived, or any call of an
    // ungated channel), a `sending` or `delivering` row is this attempt's with nothing sent (a
    // reply lost, a mark whose request was cancelled, an unmark that failed): the boundary and
    // answerThroughOutages take it back.
    ctx.state.claimTried = true;
    const from: IncomingStatus[] = ctx.state.force ? [...CLAIMABLE, ...RESENDABLE] : CLAIMABLE;
    const claimed = await this.deps.store.messages.setStatus(ctx.id!, gated ? "sending" : "delivering", { from, fence });
    // Fenced: another instance owns the bot now (this one was paused or cut off past its lease).
    // Not sent, nothing written: the new owner's recovery refunds the reservation and answers.
    if (!claimed && fence && !(await this.deps.store.owners.holds(fence.bot, fence.owner, fence.epoch))) throw new FencedError(fence.bot, fence.epoch);
    if (!claimed) {
      // Another process (a replay) answered it meanwhile, or is answering it: answer at most once.
      ctx.log.warn("message was answered elsewhere; not sending");
      if (ctx.reservation && !ctx.state.charged) await this.deps.store.balance.refund(ctx.reservation, "answered elsewhere", fence);
      ctx.outcome = "skipped";
      return;
    }
    const t = performance.now();
    const sent = { parts: (ctx.state.fromPart as number | undefined) ?? 0, of: 0, firstId: null as string | null };
    let delivery;
    try {
      if (!gated) ctx.state.sendStarted = true;
      delivery = await this.deps.channel.send(this.targetOf(ctx), ctx.completion!.text, gated ? this.progressOf(ctx, sent) : undefined);
    } catch (error) {
      if (error instanceof FencedError || !(await this.notDelivered(ctx, error, sent.parts))) throw error;
      return;
    }
    ctx.delivery = { channelMessageId: sent.firstId ?? delivery.channelMessageId };
    if (gated) ctx.state.parts = sent.of;
    ctx.timings.deliver = performance.now() - t;
    await next();
  };

  /**
   * The durable marks of a gated send (see {@link SendProgress}): `sending` → `delivering` right
   * before a request is written (with the answer itself before the first of several parts), back
   * to `sending` once it was delivered or known not delivered, with `parts_sent`.
   */
  private progressOf(ctx: PipelineContext, sent: { parts: number; of: number; firstId: string | null }): SendProgress {
    const { store, fence } = this.deps;
    const id = ctx.id!;
    return {
      fromPart: sent.parts,
      beforeWrite: async (part, parts) => {
        const c = ctx.completion!;
        const keep: PartialAnswer | undefined =
          part === 0 && parts > 1
            ? {
                text: c.text,
                parts,
                model: c.model,
                prompt_tokens: c.usage.prompt_tokens,
                completion_tokens: c.usage.completion_tokens,
                latency_ms: Math.round(c.latencyMs),
              }
            : undefined;
        if (!(await store.messages.markWriting(id, part, { delivery: keep, fence }))) {
          if (fence && !(await store.owners.holds(fence.bot, fence.owner, fence.epoch))) throw new FencedError(fence.bot, fence.epoch);
          throw new Error("the answer's claim was taken over before it was sent (a replay or recovery); not sent");
        }
      },
      notWritten: async (part) => {
        await store.messages.unmarkWriting(id, part);
      },
      delivered: async (part, parts, channelMessageId) => {
        // From here something reached the channel: never answered again from the start.
        ctx.state.sendStarted = true;
        sent.parts = part + 1;
        sent.of = parts;
        if (part === 0) sent.firstId = channelMessageId;
        // The next part's request is not written yet: resumable again, from the next part.
        if (part + 1 < parts) await store.messages.unmarkWriting(id, part + 1);
      },
    };
  }

  /**
   * A gated send that ended without every part delivered. A request that may have arrived makes
   * the answer `unconfirmed`; parts delivered before a refusal make it `partial`. Both keep the
   * charge (never sent again by themselves). Nothing delivered: false, the boundary records the
   * failure and refunds.
   * @returns true when handled here
   */
  private async notDelivered(ctx: PipelineContext, error: unknown, partsSent: number): Promise<boolean> {
    const unconfirmed = error instanceof UnconfirmedSendError;
    if (!unconfirmed && partsSent === 0) return false;
    const cost = ctx.reservation ? -ctx.reservation.delta : 0;
    const parts = partsSent ? `; ${partsSent} part(s) delivered before` : "";
    const reason = unconfirmed ? `${describeError(error)}; not sent again${parts}` : `${describeError(error)}${parts}; bots replay --send sends the rest`;
    ctx.outcome = unconfirmed ? "unconfirmed" : "partial";
    ctx.state.sendStarted = true;
    ctx.error = error;
    ctx.state.parts = partsSent;
    if (unconfirmed)
      ctx.log.warn(
        { err: error, parts_sent: partsSent, cost },
        "answer unconfirmed: the connection failed after the request was written; not sent again (the charge stands)",
      );
    else
      ctx.log.warn(
        { err: error, parts_sent: partsSent, cost },
        "answer partly delivered: a later part failed; the charge stands, bots replay --send sends the missing parts",
      );
    try {
      // Not fenced: it records what happened on the channel (the status condition keeps a
      // recovery's verdict that came first).
      await this.deps.store.messages.setStatus(ctx.id!, unconfirmed ? "unconfirmed" : "partial", {
        error: reason.slice(0, 2000),
        cost,
        from: unconfirmed ? ["delivering"] : ["sending", "delivering"],
      });
    } catch (storageError) {
      ctx.log.error(
        { err: storageError },
        "could not record how the send ended; the next start's recovery does (`delivering` → unconfirmed, `sending` → the missing parts are sent)",
      );
    }
    return true;
  }

  /**
   * Waits until the lease is fresh (checked every 50 ms): a heartbeat after an outage makes it so,
   * or the instance, cut off past its lease, stops the bot, and the stop ends the wait.
   * @throws StopError when the pipeline stops meanwhile
   */
  private async untilLeaseFresh(ctx: PipelineContext): Promise<void> {
    const fresh = this.deps.leaseFresh;
    if (!fresh || fresh()) return;
    ctx.log.warn("no heartbeat reached the database lately: waiting for one before sending");
    while (!fresh()) {
      await sleep(50, this.stopping.signal);
      if (this.stopping.signal.aborted) throw new StopError();
    }
  }

  // --- stage 8: settle ---------------------------------------------------------------------
  private readonly settle: Middleware<PipelineContext> = async (ctx, next) => {
    const c = ctx.completion!;
    ctx.answerId = await this.storageRetry(
      () =>
        this.deps.store.messages.settle(
          {
            incoming: this.incomingRef(ctx),
            text: c.text,
            channel_message_id: ctx.delivery?.channelMessageId ?? null,
            model: c.model,
            prompt_tokens: c.usage.prompt_tokens,
            completion_tokens: c.usage.completion_tokens,
            cost: ctx.reservation ? -ctx.reservation.delta : 0,
            latency_ms: c.latencyMs,
            created_ms: this.now(),
            ...(typeof ctx.state.parts === "number" ? { parts: ctx.state.parts } : {}),
          },
          this.deps.fence,
        ),
      ctx.log,
      // Sent but not stored: keep trying for about a minute before leaving it `delivering`.
      14,
    );
    ctx.outcome = "answered";
    ctx.log.info(
      {
        answer_id: ctx.answerId,
        cost_credits: formatCredits(ctx.reservation ? -ctx.reservation.delta : 0),
        user_id: ctx.msg.userId,
        chars: ctx.msg.text.length,
        model: c.model,
        ...c.usage,
        latency_ms: c.latencyMs,
      },
      "answer delivered",
    );
    await next();
  };

  // --- stage 9: notify ---------------------------------------------------------------------
  private readonly notify: Middleware<PipelineContext> = async (ctx) => {
    this.deps.notifier?.notify({
      type: "reply",
      bot: ctx.msg.bot,
      message_id: ctx.answerId!,
      in_reply_to: ctx.id!,
      thread_key: ctx.msg.threadKey,
      at: new Date(this.now()).toISOString(),
    });
  };

  private targetOf(ctx: PipelineContext): DeliveryTarget {
    const m = ctx.msg;
    return { bot: m.bot, chatId: m.chatId, threadKey: m.threadKey, kind: m.kind, channelMessageId: m.channelMessageId, target: m.target ?? {} };
  }

  private incomingRef(ctx: PipelineContext) {
    const m = ctx.msg;
    return { id: ctx.id!, bot: m.bot, channel: m.channel, thread_key: m.threadKey, chat_id: m.chatId };
  }
}

/**
 * The chat sent to the model for a message: the bot's system prompt for the
 * message's kind rendered at `nowMs` (epoch ms UTC), the last `history.max_messages` turns of
 * the thread stored before message `id`, then the message itself.
 * @throws ConfigError when the prompt file cannot be read
 */
export async function buildPrompt(bot: BotConfig, store: Pick<Store, "messages">, msg: IncomingMessage, id: number, nowMs: number): Promise<ChatMessage[]> {
  const template = loadPrompt(bot, msg.kind);
  let system = renderPrompt(template, { botName: bot.name, timezone: bot.timezone, nowMs, extra: msg.vars });
  // A comment means little without its post: a prompt that does not place {{post_text}} gets it appended.
  const postText = msg.vars?.post_text;
  if (postText && !/\{\{\s*post_text\s*\}\}/.test(template)) system += `\n\nPost being commented on:\n${postText}`;
  // Facts a feature computed for this message (features.coaching): appended when the prompt does not place {{coaching}}.
  const coaching = msg.vars?.coaching;
  if (coaching && !/\{\{\s*coaching\s*\}\}/.test(template)) system += `\n\n${coaching}`;
  const history = await store.messages.history(bot.name, msg.threadKey, id, bot.history.max_messages);
  // Earlier pictures are not sent again: a placeholder says they were there.
  return [
    { role: "system", content: system },
    ...history.map((t): ChatMessage => ({ role: t.role, content: withPlaceholder(t.text, t.images ?? 0) })),
    { role: "user", content: msg.text },
  ];
}

/** Rebuilds the IncomingMessage a stored row came from (for replay). */
export function messageFromRow(row: MessageRow): IncomingMessage {
  const meta = (row.meta ? JSON.parse(row.meta) : {}) as Partial<StoredMeta>;
  return {
    bot: row.bot,
    channel: row.channel as IncomingMessage["channel"],
    kind: meta.kind ?? "messages",
    chatId: row.chat_id,
    userId: row.user_id,
    userName: row.user_name,
    text: row.text,
    images: storedImages(meta.images),
    ...(typeof meta.group === "string" ? { group: meta.group } : {}),
    ...(meta.button ? { button: meta.button } : {}),
    ...(meta.membership ? { membership: meta.membership } : {}),
    threadKey: row.thread_key,
    dedupeKey: row.dedupe_key,
    channelMessageId: row.channel_message_id,
    target: meta.target,
    vars: meta.vars,
    receivedMs: row.created_ms,
  };
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
/** Statuses an answer is claimed from: never answered, or partly delivered (the missing parts). */
const CLAIMABLE: IncomingStatus[] = ["received", "failed", "no_balance", "expired", "partial"];
/** Statuses a forced answer (`bots replay --send --force`) is claimed from as well. */
const RESENDABLE: IncomingStatus[] = ["answered", "delivering", "unconfirmed", "skipped"];

/** How many finished message ids a pipeline remembers ({@link Pipeline.holds}). */
const RECENT_DONE = 4096;

/** Thrown into an answer that a stop (the drain deadline) interrupts. */
export class StopError extends Error {
  constructor() {
    super("stopped by the drain deadline");
    this.name = "StopError";
  }
}
