import { createHash, timingSafeEqual } from "node:crypto";
import type http from "node:http";
import type https from "node:https";
import type { Logger } from "pino";
import type { API, VK } from "vk-io";
import type { BotConfig } from "../../config/schema.js";
import type { IntakeResult, Pipeline } from "../../core/pipeline.js";
import { RecentIds } from "../../lib/recent-ids.js";
import { withRetries, type RetryDecision } from "../../lib/retry.js";
import { splitText } from "../../lib/text.js";
import { markdownToPlain } from "../../lib/markdown.js";
import type { Delivery, DeliveryTarget, OutgoingReply, SendProgress } from "../../core/types.js";
import { ChannelError } from "../../errors.js";
import type { Store } from "../../storage/index.js";
import { HealthTracker } from "../health.js";
import { MAX_PUSHED_BODY_BYTES, type PushedAnswer, servePushed } from "../ingress-http.js";
import type { ChannelDeps, ChannelWorker } from "../types.js";
import { boundTooManyRequests } from "./api-worker.js";
import { keepTyping } from "../typing.js";
import { GatedHttpAgent, GatedHttpsAgent, gatedSend } from "../write-gate.js";
import { VkLongPoll } from "./longpoll.js";
import { postRecord, translateEvent, VK_MAX_TEXT, type VkEvent, type VkPost } from "./translate.js";

/** Tuning of {@link VkWorker} (tests shorten the waits). */
export interface VkWorkerOptions {
  /** First back-off of API retries, ms; doubles each time. @defaultValue 1000 */
  backoffMs?: number;
  /** How often "typing" is shown again (messages.setActivity) while an answer is prepared, ms. @defaultValue 4000 */
  typingEveryMs?: number;
  /** How long an answer is prepared before "typing" first shows, ms. @defaultValue 500 (src/channels/typing.ts) */
  typingAfterMs?: number;
  /** Retries of messages.send / wall.createComment on retryable errors. @defaultValue 4 */
  sendRetries?: number;
  /** Long poll: first back-off after a failed request or an event that could not be recorded, ms; doubles up to 30 s. @defaultValue 3000 */
  pollingWaitMs?: number;
  /** Largest callback body accepted, bytes. @defaultValue 1 MiB */
  maxBodyBytes?: number;
  now?: () => number;
}

/**
 * The positive results that allow acknowledging a VK event (callback `ok`, long poll `ts`
 * moved): the pipeline's intake result, a wall post stored, an event ignored by rule, or an
 * `event_id` recorded lately (`duplicate`).
 */
export type VkAck = IntakeResult | { status: "post" } | { status: "ignored"; reason: string };

const VK_ACK_STATUSES: ReadonlySet<string> = new Set(["queued", "filtered", "duplicate", "post", "ignored"]);

/** True only for a {@link VkAck}: nothing else (undefined, a stray value) acknowledges. */
export function vkAcknowledges(ack: VkAck | undefined): ack is VkAck {
  return typeof ack?.status === "string" && VK_ACK_STATUSES.has(ack.status);
}

/** How many recent `event_id`s are remembered to drop resent callbacks early. */
const RECENT_EVENTS = 2000;

/**
 * VK API error codes worth another attempt (src/lib/retry.ts): 1 unknown error, 6 too many requests per
 * second, 9 flood control, 10 internal server error. Everything else (5 authorization failed,
 * 7/15 no permission, 100 bad parameter, 901 can't send to a user without permission, ...) is
 * final. vk-io's own endless re-queueing of 6 is switched off ({@link boundTooManyRequests}), so
 * 6 is retried here, bounded by `sendRetries`.
 */
const RETRYABLE_CODES = new Set([1, 6, 9, 10]);

/**
 * Retry policy for VK API calls: the error `code` in VK's JSON body (carried as
 * {@link ChannelError.status}); no code (connection refused, timeout) backs off.
 */
export function classifyVkError(error: unknown): RetryDecision {
  const status = (error as ChannelError | undefined)?.status;
  if (status === undefined) return { retry: true };
  return { retry: RETRYABLE_CODES.has(status) };
}

/**
 * Maps a vk-io error to a {@link ChannelError}: VK's `{error: {error_code, error_msg}}` body
 * (vk-io `APIError`, `code` = error_code) keeps the code as `status`; network errors have none.
 */
export function toVkError(error: unknown, method: string): ChannelError {
  if (error instanceof ChannelError) return error;
  const e = error as { code?: unknown; message?: string; name?: string };
  if (e?.name === "APIError" && typeof e.code === "number") {
    const hint =
      e.code === 5
        ? "check vk.token (a community token with messages and wall access)"
        : e.code === 901
          ? "the user has not allowed messages from the community"
          : undefined;
    return new ChannelError("VK_API", `${method}: VK error ${e.code}: ${e.message ?? ""}`.trim(), { cause: error, status: e.code, hint });
  }
  return new ChannelError("VK_NETWORK", `${method}: ${e?.message ?? String(error)}`, { cause: error });
}

/**
 * VK community bot through vk-io. Two transports feed the same {@link handleEvent}:
 * the Callback API (our HTTP endpoint; VK POSTs events) and the Bots Long Poll API
 * ({@link VkLongPoll}: its events have the callback shape; the `ts` advances only past recorded events). API calls go through vk-io's `API` with
 * `apiBaseUrl`/`apiVersion` from config and our retry policy ({@link classifyVkError}).
 */
export class VkWorker implements ChannelWorker {
  /** Sends mark themselves right before their bytes are written (or, ungated, right before the call). */
  readonly gatesWrites = true;
  private pipeline?: Pipeline;
  private readonly recent = new RecentIds<string>(RECENT_EVENTS);
  private readonly inflight = new Set<Promise<unknown>>();
  private longPoll?: VkLongPoll;
  private readonly now: () => number;
  private readonly tracker: HealthTracker;

  constructor(
    private readonly bot: BotConfig,
    private readonly vk: VK,
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly options: VkWorkerOptions = {},
    /** vk-io's queue carries the write gate (false: its internals changed; sends mark before the call). */
    private readonly gated = true,
  ) {
    this.now = options.now ?? Date.now;
    this.tracker = new HealthTracker(this.now);
  }

  /** Receiving state for `/healthz`: the callback endpoint or long poll, and VK API calls (a VK error code means VK answered). */
  health() {
    return this.tracker.get();
  }

  /**
   * Creates the worker, importing vk-io on demand.
   * @throws ChannelError when `deps.store` is missing (the worker stores posts)
   */
  static async create(bot: BotConfig, logger: Logger, deps: ChannelDeps | undefined, options: VkWorkerOptions = {}): Promise<VkWorker> {
    if (!deps?.store) throw new ChannelError("VK_NO_STORE", "the VK worker needs the database (posts are stored)");
    const { VK, SequentialWorker } = await import("vk-io");
    const cfg = bot.vk!;
    // Gated (src/channels/write-gate.ts): a send's request waits for its durable mark.
    const httpAgent = new GatedHttpAgent({ keepAlive: true });
    const httpsAgent = new GatedHttpsAgent({ keepAlive: true });
    // vk-io defaults to https.globalAgent, which cannot reach an http:// api_base_url (proxies, tests).
    const agent = ((url: URL) => (url.protocol === "http:" ? httpAgent : httpsAgent)) as unknown as https.Agent;
    const vk = new VK({
      token: cfg.token,
      apiBaseUrl: cfg.api_base_url.replace(/\/+$/, ""),
      apiVersion: cfg.api_version,
      // Retries are ours (withRetries + classifyVkError), not vk-io's blind ones.
      apiRetryLimit: 0,
      apiLimit: 20,
      apiTimeout: 15_000,
      agent,
    });
    const gated = boundTooManyRequests(vk.api, SequentialWorker, logger);
    return new VkWorker(bot, vk, deps.store, logger, { now: deps.now, ...options }, gated);
  }

  private get api(): API {
    return this.vk.api;
  }

  async start(pipeline: Pipeline): Promise<void> {
    const cfg = this.bot.vk!;
    this.pipeline = pipeline;
    try {
      await this.call("groups.getById", { group_id: cfg.group_id }, 3);
    } catch (error) {
      const status = (error as ChannelError).status;
      if (status !== undefined) {
        throw new ChannelError("VK_AUTH", `bot ${this.bot.name}: VK refused the token or group (error ${status}: ${(error as Error).message})`, {
          cause: error,
          status,
          hint: "check vk.token (community token) and vk.group_id",
        });
      }
      throw new ChannelError("VK_UNREACHABLE", `bot ${this.bot.name}: VK API at ${cfg.api_base_url} is unreachable: ${(error as Error).message}`, {
        cause: error,
        hint: "check the network and vk.api_base_url",
      });
    }
    if (cfg.mode === "longpoll") await this.startLongPoll();
    else await this.startCallback();
  }

  private async startLongPoll(): Promise<void> {
    const cfg = this.bot.vk!;
    const cursor = longPollCursorName(cfg.group_id);
    const longPoll = new VkLongPoll({
      getServer: async () => {
        const r = await this.call<{ server: string; key: string; ts: string | number }>("groups.getLongPollServer", { group_id: cfg.group_id }, 3);
        return { server: r.server, key: r.key, ts: String(r.ts) };
      },
      // Group long poll events have the Callback API shape: both transports share handleEvent.
      handle: async (event) => vkAcknowledges(await this.handleEvent(event, "longpoll")),
      loadTs: () => this.store.cursors.get(this.bot.name, cursor),
      saveTs: (ts) => this.store.cursors.set(this.bot.name, cursor, ts),
      logger: this.logger,
      backoffMs: this.options.pollingWaitMs ?? 3000,
    });
    try {
      await longPoll.start();
    } catch (error) {
      const err = toVkError(error, "groups.getLongPollServer");
      throw new ChannelError("VK_LONGPOLL", `bot ${this.bot.name}: long poll could not start: ${err.message}`, {
        cause: err,
        status: err.status,
        hint: "enable Bots Long Poll API in the community (Manage → API usage → Long Poll API) with the event types ticked",
      });
    }
    this.longPoll = longPoll;
    this.tracker.started();
    this.logger.info({ group_id: cfg.group_id, mode: "longpoll" }, "vk bot connected");
  }

  private async startCallback(): Promise<void> {
    // Events arrive on the instance's HTTP ingress (`POST /vk/<bot>`, handleHttp).
    this.tracker.started();
    this.logger.info({ group_id: this.bot.vk!.group_id, mode: "callback", path: `/vk/${this.bot.name}` }, "vk callback endpoint ready");
  }

  /**
   * Records callback events into `pipeline` without receiving on its own (an instance that does
   * not own the bot: the owner answers what it records).
   */
  async attach(pipeline: Pipeline): Promise<void> {
    this.pipeline ??= pipeline;
  }

  private track(p: Promise<unknown>): void {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  /** True when the event names this bot's community (`group_id`, sent by VK with every event). */
  private ourGroup(event: VkEvent): boolean {
    return event.group_id !== undefined && event.group_id !== null && Number(event.group_id) === this.bot.vk!.group_id;
  }

  /**
   * One Callback API request on the instance's HTTP ingress (`POST /vk/<bot>`; any instance
   * serves it, the owner answers), through the handler every pushed channel shares
   * ({@link servePushed}: 405, 413, malformed JSON or no `type` → 400, then `ok` or 503 with
   * `Retry-After`). VK's parts ({@link screenCallback}): another community → 403; a wrong or
   * missing `secret` → 403; `confirmation` → the configured string; anything else → `ok` only
   * once {@link handleEvent} gave a positive result (the answer follows later); anything thrown
   * → 503, so VK sends the event again.
   */
  handleHttp(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const done = servePushed<VkEvent>(req, res, {
      logger: this.logger,
      maxBodyBytes: this.options.maxBodyBytes ?? MAX_PUSHED_BODY_BYTES,
      parse: (json) => (isEvent(json) ? json : undefined),
      notAnUpdate: "callback body is not a VK event (malformed JSON); 400",
      screen: (event, r) => this.screenCallback(event, r),
      receive: async (event) => vkAcknowledges(await this.handleEvent(event, "callback")),
      describe: (event) => ({ event_id: event.event_id, type: event.type }),
      notRecorded: "event could not be recorded; answered 503, VK will resend it",
      // `ok` only on a positive result: anything else makes VK send the event again.
      unavailableBody: "error",
    });
    this.track(done);
    return done;
  }

  /**
   * The Callback API checks of one parsed event before it is recorded: VK sends `group_id` with
   * every event, so one without it or for another community is refused (403); a present
   * `secret` must match `vk.callback.secret` (VK sends none with `confirmation`) else 403;
   * `confirmation` is answered with `vk.callback.confirmation`. Undefined: record the event.
   */
  private screenCallback(event: VkEvent, req: http.IncomingMessage): PushedAnswer | undefined {
    const cb = this.bot.vk!.callback!;
    if (!this.ourGroup(event)) {
      this.logger.warn({ group_id: event.group_id ?? null, type: event.type }, "callback for another community or without group_id; 403");
      return { status: 403, body: "forbidden" };
    }
    const secretOk = cb.secret === undefined || sameSecret(event.secret, cb.secret) || (event.type === "confirmation" && event.secret === undefined);
    if (!secretOk) {
      this.logger.warn({ type: event.type, event_id: event.event_id }, "callback with a wrong or missing secret; 403");
      return { status: 403, body: "forbidden" };
    }
    if (event.type === "confirmation") {
      this.logger.info("callback confirmation requested");
      return { status: 200, body: cb.confirmation };
    }
    const retry = req.headers["x-retry-counter"];
    if (retry !== undefined) this.logger.debug({ event_id: event.event_id, retry_counter: retry }, "VK resent an event");
    return undefined;
  }

  /**
   * Dispatches one event (both transports): stores posts, submits messages and comments to the
   * pipeline. Resolves, once recorded, with the positive result that allows acknowledging it
   * (callback `ok`, long poll `ts` moved); the answer follows in the pipeline's queue.
   * @throws whatever recording threw, of any type (the event is not acknowledged)
   */
  async handleEvent(event: VkEvent, source: "callback" | "longpoll"): Promise<VkAck> {
    if (!this.ourGroup(event)) {
      // Never this bot's to record: acknowledged as ignored by rule (a resend would be refused again).
      this.logger.warn(
        { group_id: event.group_id ?? null, type: event.type, event_id: event.event_id, source },
        "event for another community or without group_id; skipped",
      );
      return { status: "ignored", reason: "another community or no group_id" };
    }
    if (event.event_id && this.recent.has(event.event_id)) {
      this.logger.debug({ event_id: event.event_id }, "event seen before; dropped");
      return { status: "duplicate" };
    }
    const action = translateEvent(event, this.bot, this.now());
    let ack: VkAck;
    switch (action.kind) {
      case "ignore":
        this.logger.debug({ type: event.type, event_id: event.event_id, reason: action.reason, source }, "event ignored");
        ack = { status: "ignored", reason: action.reason };
        break;
      case "post":
        await this.store.posts.upsert({ bot: this.bot.name, channel: "vk", ...action.post });
        this.logger.info({ owner_id: action.post.owner_id, post_id: action.post.post_id }, "wall post stored");
        ack = { status: "post" };
        break;
      case "message":
        ack = await this.pipeline!.submit(action.message);
        break;
      case "comment": {
        const post = await this.postFor(action.ownerId, action.postId);
        if (post) action.message.vars = { post_text: post.text, ...(post.posted_ms !== null ? { post_date: new Date(post.posted_ms).toISOString() } : {}) };
        ack = await this.pipeline!.submit(action.message);
        break;
      }
    }
    if (event.event_id && vkAcknowledges(ack)) {
      this.recent.add(event.event_id);
    }
    return ack;
  }

  /** The post a comment belongs to: stored by `wall_post_new`, else fetched with wall.getById and stored. */
  private async postFor(ownerId: string, postId: string): Promise<{ text: string; posted_ms: number | null } | undefined> {
    const stored = await this.store.posts.get(this.bot.name, ownerId, postId);
    if (stored) return stored;
    try {
      const res = await this.call<VkPost[] | { items?: VkPost[] }>("wall.getById", { posts: `${ownerId}_${postId}` }, 1);
      const items = Array.isArray(res) ? res : (res?.items ?? []);
      const p = items.find((i) => String(i.id) === postId);
      if (!p) return undefined;
      const rec = postRecord(p);
      await this.store.posts.upsert({ bot: this.bot.name, channel: "vk", ...rec });
      return rec;
    } catch (error) {
      this.logger.warn({ err: error, owner_id: ownerId, post_id: postId }, "post text unavailable; the comment is answered without it");
      return undefined;
    }
  }

  async stop(): Promise<void> {
    this.tracker.stopped("stopped");
    // Ends after the event being recorded; the stored ts stays before what was not recorded.
    await this.longPoll?.stop();
    this.longPoll = undefined;
    await Promise.all([...this.inflight]);
  }

  /**
   * Sends an answer's text (VK gets no buttons, documents or contact requests), split at 4096
   * characters: to a dialog with messages.send (`peer_id`, `random_id` derived from the incoming
   * message and the text, so VK drops a repeated send), to a comment with wall.createComment
   * (`reply_to_comment`, `from_group`, `guid` likewise), from part `progress.fromPart`. A part
   * is retried only when it was not delivered: VK answered with a retryable error code, or the
   * request failed before it was written.
   * @returns the first part's VK id (message id or `comment_id`) of those sent by this call
   * @throws UnconfirmedSendError when a request was written and its connection failed (never retried)
   * @throws ChannelError with the VK error code as `status` (e.g. 901) after retries
   */
  async send(to: DeliveryTarget, reply: OutgoingReply, progress?: SendProgress): Promise<Delivery> {
    const vk = this.bot.vk!;
    let first: string | null = null;
    // VK shows no formatting: Markdown markers are removed (reply.format: markdown).
    const markdown = (reply.format ?? this.bot.reply.format) === "markdown";
    const parts = splitText(markdown ? markdownToPlain(reply.text) : reply.text, VK_MAX_TEXT);
    for (let i = progress?.fromPart ?? 0; i < parts.length; i++) {
      const part = parts[i]!;
      let id: string;
      const seed = `${this.bot.name}|${to.threadKey}|${to.channelMessageId ?? ""}|${i}|${part}`;
      if (to.kind === "comments") {
        const t = to.target as { owner_id: number; post_id: number; comment_id: number };
        const r = await this.sendCall<{ comment_id: number }>(
          "wall.createComment",
          {
            owner_id: t.owner_id,
            post_id: t.post_id,
            from_group: vk.group_id,
            reply_to_comment: t.comment_id,
            message: part,
            guid: createHash("sha1").update(seed).digest("hex").slice(0, 32),
          },
          progress,
          i,
          parts.length,
        );
        id = String(r.comment_id);
      } else {
        const peerId = typeof to.target.peer_id === "number" ? to.target.peer_id : Number(to.chatId);
        const r = await this.sendCall<number | Array<{ message_id?: number }>>(
          "messages.send",
          { peer_id: peerId, random_id: randomId(seed), message: part },
          progress,
          i,
          parts.length,
        );
        id = String(typeof r === "number" ? r : (r?.[0]?.message_id ?? ""));
      }
      first ??= id;
      await progress?.delivered(i, parts.length, id);
    }
    return { channelMessageId: first };
  }

  /**
   * Shows "typing…" in a dialog (messages.setActivity `type: typing` with `peer_id`) once the
   * answer has taken `typingAfterMs`, and every `typingEveryMs` after it, until the returned
   * function is called; nothing for wall comments.
   * Best effort: a failed call is logged at debug; the calls are made outside any send, so they
   * never wait for the write gate.
   * @returns stops it (idempotent)
   */
  typing(to: DeliveryTarget): () => void {
    if (to.kind === "comments") return () => {};
    const peerId = typeof to.target.peer_id === "number" ? to.target.peer_id : Number(to.chatId);
    return keepTyping(
      () => this.attempt("messages.setActivity", { peer_id: peerId, type: "typing", group_id: this.bot.vk!.group_id }),
      this.options.typingEveryMs ?? 4000,
      (e) => this.logger.debug({ err: e }, "messages.setActivity failed"),
      this.options.typingAfterMs,
    );
  }

  /** One sending VK API call through the write gate, with our retry policy (see {@link gatedSend}). */
  private sendCall<T>(method: string, params: Record<string, unknown>, progress: SendProgress | undefined, part: number, parts: number): Promise<T> {
    return gatedSend({
      method,
      call: () => this.attempt<T>(method, params),
      classify: classifyVkError,
      progress,
      part,
      parts,
      ungated: !this.gated,
      retries: this.options.sendRetries ?? 4,
      baseMs: this.options.backoffMs ?? 1000,
      onRetry: (e, attempt, wait) =>
        this.logger.warn({ err: e, method, attempt, wait_ms: Math.round(wait) }, "VK send failed before it was delivered; retrying"),
    });
  }

  /** One VK API method through vk-io, with our retry policy. */
  private call<T>(method: string, params: Record<string, unknown>, retries = this.options.sendRetries ?? 4): Promise<T> {
    return withRetries(() => this.attempt<T>(method, params), {
      retries,
      baseMs: this.options.backoffMs ?? 1000,
      classify: classifyVkError,
      onRetry: (e, attempt, wait) => this.logger.warn({ err: e, method, attempt, wait_ms: Math.round(wait) }, "VK API call failed; retrying"),
    });
  }

  /** One VK API request through vk-io; health follows whether VK answered. */
  private attempt<T>(method: string, params: Record<string, unknown>): Promise<T> {
    return this.api.call<T>(method, params).then(
      (r) => (this.tracker.ok(), r),
      (e: unknown) => {
        const err = toVkError(e, method);
        // An error code is VK answering; only an unreachable API counts against health.
        if (err.status === undefined) this.tracker.failed(err);
        else this.tracker.ok();
        return Promise.reject(err);
      },
    );
  }
}

/** Name of the long poll `ts` cursor (table `cursors`); per community, as VK's ts counts per community. */
export function longPollCursorName(groupId: number): string {
  return `vk:longpoll:${groupId}`;
}

/** A positive int32 from a string: messages.send `random_id` (VK drops a second send with the same one). */
export function randomId(seed: string): number {
  return createHash("sha1").update(seed).digest().readUInt32BE(0) & 0x7fffffff;
}

/** True for a JSON value shaped as a Callback API event (an object with a string `type`). */
function isEvent(json: unknown): json is VkEvent {
  return typeof json === "object" && json !== null && typeof (json as { type?: unknown }).type === "string";
}

/** Compares a received secret with the configured one in constant time. */
function sameSecret(got: unknown, want: string): boolean {
  if (typeof got !== "string") return false;
  const a = createHash("sha256").update(got).digest();
  const b = createHash("sha256").update(want).digest();
  return timingSafeEqual(a, b);
}
