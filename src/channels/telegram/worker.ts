import { timingSafeEqual } from "node:crypto";
import type http from "node:http";
import type { Logger } from "pino";
import type { Telegraf } from "telegraf";
import type { MessageEntity, Update, UserFromGetMe } from "telegraf/types";
import type { BotConfig } from "../../config/schema.js";
import type { IntakeResult, Pipeline } from "../../core/pipeline.js";
import { classifyHttpError, sleep, withRetries } from "../../lib/retry.js";
import type { Button, Delivery, DeliveryTarget, DraftSession, OutgoingDocument, OutgoingReply, SendProgress } from "../../core/types.js";
import { ChannelError } from "../../errors.js";
import { HealthTracker } from "../health.js";
import { MAX_PUSHED_BODY_BYTES, servePushed } from "../ingress-http.js";
import type { ChannelWorker } from "../types.js";
import { keepTyping } from "../typing.js";
import { GatedHttpAgent, GatedHttpsAgent, gatedAgentFor, gatedSend, outsideGate, type WriteGate } from "../write-gate.js";
import { splitText } from "../../lib/text.js";
import { type FormattedText, markdownToEntities, splitFormatted } from "../../lib/markdown.js";
import { TG_MAX_TEXT, translateUpdate } from "./translate.js";
import { TelegramDraft } from "./draft.js";

/** Tuning of {@link TelegramWorker} (tests shorten the waits). */
export interface TelegramWorkerOptions {
  /** getUpdates long-poll timeout, seconds. @defaultValue 50 */
  pollTimeoutS?: number;
  /** Pause after a getUpdates that returned nothing at once (a server that does not long-poll), ms. @defaultValue 300 */
  idlePauseMs?: number;
  /** First back-off after a failed getUpdates, ms; doubles up to 30 s. @defaultValue 1000 */
  backoffMs?: number;
  /** Retries of sendMessage on 429/5xx and on network errors before the request was written. @defaultValue 4 */
  sendRetries?: number;
  /** Largest webhook body accepted, bytes. @defaultValue 1 MiB */
  maxBodyBytes?: number;
  /** How often the "typing" chat action is sent again while an answer is prepared, ms (Telegram shows it 5 s). @defaultValue 4000 */
  typingEveryMs?: number;
  /** How long an answer is prepared before the first "typing" chat action, ms. @defaultValue 500 (src/channels/typing.ts) */
  typingAfterMs?: number;
  now?: () => number;
}

/**
 * The keep-alive agents of every bot in this process (created on first use): gated, so that a
 * send's request waits for its durable mark before a byte is written (src/channels/write-gate.ts).
 */
let httpAgent: GatedHttpAgent | undefined;
let httpsAgent: GatedHttpsAgent | undefined;

const ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"] as const;

/** Longest run of recording updates of one getUpdates batch before the event loop gets a turn, ms. */
const YIELD_EVERY_MS = 4;

/** Longest wait for one sendMessageDraft call, ms. */
const DRAFT_TIMEOUT_MS = 10_000;

/**
 * The positive results that allow acknowledging a Telegram update (moving the getUpdates offset
 * past it, or answering its webhook call 200): the pipeline's intake result, an update ignored by
 * rule, or `/start`/`/help` answered from config.
 */
export type TelegramAck = IntakeResult | { status: "ignored"; reason: string } | { status: "command"; command: "start" | "help" };

const ACK_STATUSES: ReadonlySet<string> = new Set(["queued", "filtered", "duplicate", "ignored", "command"]);

/** True for a JSON value shaped as a Bot API `Update` (an object with a numeric `update_id`). */
function isUpdate(json: unknown): json is Update {
  return typeof json === "object" && json !== null && typeof (json as { update_id?: unknown }).update_id === "number";
}

/** True only for a {@link TelegramAck}: nothing else (undefined, a stray value) acknowledges. */
function acknowledges(ack: TelegramAck | undefined): ack is TelegramAck {
  return typeof ack?.status === "string" && ACK_STATUSES.has(ack.status);
}

/**
 * Telegram: telegraf calls the Bot API; receiving is ours. telegraf's own polling waits
 * for every handler of a batch before the next getUpdates and stops on unexpected errors, and its
 * middleware chain (`handleUpdate`, `bot.catch`) would decide acknowledgement by which errors its
 * handler rethrows. Here both the polling loop and the webhook call {@link receive}, which hands
 * the update to the pipeline and returns a positive result; only that result acknowledges
 * (offset moved, 200), anything thrown does not. The loop never waits for answers.
 */
export class TelegramWorker implements ChannelWorker {
  /** Sends mark themselves right before their bytes are written (the gated agents above). */
  readonly gatesWrites = true;
  private me?: UserFromGetMe;
  private readonly abort = new AbortController();
  private loop?: Promise<void>;
  private attached?: Promise<void>;
  private readonly tracker: HealthTracker;

  constructor(
    private readonly bot: BotConfig,
    private readonly telegraf: Telegraf,
    private readonly logger: Logger,
    private readonly options: TelegramWorkerOptions = {},
  ) {
    this.tracker = new HealthTracker(options.now);
  }

  /** Receiving state for `/healthz`: getUpdates (polling) or the webhook listener, and sendMessage. */
  health() {
    return this.tracker.get();
  }

  /** Creates the worker, importing telegraf on demand. */
  static async create(bot: BotConfig, logger: Logger, options: TelegramWorkerOptions = {}): Promise<TelegramWorker> {
    const { Telegraf } = await import("telegraf");
    const tg = bot.tg!;
    const apiRoot = tg.api_root.replace(/\/+$/, "");
    const telegraf = new Telegraf(tg.token, { telegram: { apiRoot, webhookReply: false }, handlerTimeout: 120_000 });
    // Our own keep-alive agents replace telegraf's (which it drops for http:// roots, a
    // self-hosted Bot API server on localhost): gated, so a send is marked `delivering` only
    // when its bytes are about to go out. One agent for all bots, as telegraf's own https agent
    // is: a bot's send reuses any free connection to the server.
    telegraf.telegram.options.agent = apiRoot.startsWith("http://")
      ? (httpAgent ??= new GatedHttpAgent({ keepAlive: true, keepAliveMsecs: 10_000 }))
      : (httpsAgent ??= new GatedHttpsAgent({ keepAlive: true, keepAliveMsecs: 10_000 }));
    return new TelegramWorker(bot, telegraf, logger, options);
  }

  /** The bot's own user (getMe), once started. */
  get botUser(): UserFromGetMe | undefined {
    return this.me;
  }

  async start(pipeline: Pipeline): Promise<void> {
    const tg = this.bot.tg!;
    await this.connect();
    this.logger.info({ username: this.me!.username, mode: tg.mode }, "telegram bot connected");
    this.install(pipeline);
    this.tracker.ok();
    if (tg.mode === "webhook") await this.setWebhook();
    else {
      // A webhook left from an earlier run would make getUpdates fail with 409.
      await this.telegraf.telegram.deleteWebhook().catch((e) => this.logger.debug({ err: e }, "deleteWebhook failed"));
      this.loop = this.pollLoop();
    }
    this.tracker.started();
  }

  /**
   * Records webhook updates into `pipeline` without receiving on its own (an instance that does
   * not own the bot: the owner answers what it records). Calls getMe once (mentions in groups
   * need the bot's username).
   * @throws ChannelError when the Bot API refuses the token or cannot be reached (tried again at the next update)
   */
  attach(pipeline: Pipeline): Promise<void> {
    this.attached ??= this.connect()
      .then(() => this.install(pipeline))
      .catch((error: unknown) => {
        this.attached = undefined;
        throw error;
      });
    return this.attached;
  }

  /** getMe with retries; sets the bot's own user. */
  private async connect(): Promise<void> {
    if (this.me) return;
    const tg = this.bot.tg!;
    try {
      this.me = await withRetries(() => this.telegraf.telegram.getMe().catch((e) => Promise.reject(toChannelError(e, "getMe"))), {
        retries: 3,
        baseMs: this.options.backoffMs ?? 1000,
      });
    } catch (error) {
      const status = (error as ChannelError).status;
      if (status === 401 || status === 404) {
        throw new ChannelError("TG_AUTH", `bot ${this.bot.name}: Telegram refused the token (${status})`, {
          cause: error,
          status,
          hint: "check tg.token (from @BotFather) and tg.api_root",
        });
      }
      throw new ChannelError("TG_UNREACHABLE", `bot ${this.bot.name}: Bot API at ${tg.api_root} is unreachable: ${(error as Error).message}`, {
        cause: error,
        hint: "check the network and tg.api_root",
      });
    }
    this.telegraf.botInfo = this.me;
  }

  private install(pipeline: Pipeline): void {
    this.pipeline = pipeline;
  }

  private pipeline?: Pipeline;

  /**
   * Takes one Bot API update (getUpdates or webhook) into the pipeline and says whether it may be
   * acknowledged: resolves only with a positive result — recorded, filtered and recorded, a
   * duplicate, ignored by rule (stickers, edits, groups off…), or a `/start`/`/help` answered
   * from config (nothing to record; its answer is sent, or its failure logged, first). A button
   * press (`callback_query`) gets its answerCallbackQuery only once recorded.
   * @throws whatever recording threw (of any type): the update is not acknowledged
   */
  async receive(update: Update): Promise<TelegramAck> {
    const pipeline = this.pipeline;
    if (!pipeline) throw new ChannelError("TG_NOT_READY", `bot ${this.bot.name}: updates arrived before the pipeline was attached`);
    const action = translateUpdate(update, this.bot, this.me!, (this.options.now ?? Date.now)(), pipeline.accepts);
    if (action.kind === "ignore") {
      this.logger.debug({ update_id: update.update_id, reason: action.reason }, "update ignored");
      return { status: "ignored", reason: action.reason };
    }
    if (action.kind === "command") {
      const text = this.bot.tg!.commands[action.command];
      await this.sendParts(String(action.chatId), plainParts(text), action.replyTo).catch((e) =>
        this.logger.warn({ err: e }, `/${action.command} answer failed`),
      );
      return { status: "command", command: action.command };
    }
    const intake = await pipeline.submit(action.message);
    // Stops the button's loading spinner (the answer itself comes as a message); not awaited.
    if (action.callbackQueryId)
      void this.telegraf.telegram.answerCbQuery(action.callbackQueryId).catch((e) => this.logger.debug({ err: e }, "answerCallbackQuery failed"));
    return intake;
  }

  private async pollLoop(): Promise<void> {
    const signal = this.abort.signal;
    const base = this.options.backoffMs ?? 1000;
    let backoff = base;
    let offset = 0;
    while (!signal.aborted) {
      const started = Date.now();
      let updates: Update[];
      try {
        updates = await this.telegraf.telegram.callApi(
          "getUpdates",
          { timeout: this.options.pollTimeoutS ?? 50, offset, allowed_updates: [...ALLOWED_UPDATES] },
          { signal: signal as never },
        );
        backoff = base;
        this.tracker.ok();
      } catch (error) {
        if (signal.aborted) return;
        const err = toChannelError(error, "getUpdates");
        this.tracker.failed(err);
        if (err.status === 401 || err.status === 404) {
          this.logger.error({ err }, "Telegram refused the token; this bot stops receiving");
          this.tracker.stopped(`Telegram refused the token (${err.status})`);
          return;
        }
        const wait = err.retryAfterS !== undefined ? err.retryAfterS * 1000 : backoff;
        backoff = Math.min(30_000, backoff * 2);
        this.logger.warn({ err, wait_ms: wait }, "getUpdates failed; retrying");
        await sleep(wait, signal);
        continue;
      }
      let yielded = performance.now();
      for (const update of updates) {
        // A batch of up to 100 updates is recorded one by one, each a short synchronous SQLite
        // write: give the event loop a turn every few ms, so the answers already queued send their
        // model calls and replies meanwhile instead of after the whole batch.
        if (performance.now() - yielded > YIELD_EVERY_MS) {
          await new Promise<void>((r) => setImmediate(r));
          yielded = performance.now();
        }
        let ack: TelegramAck | undefined;
        try {
          ack = await this.receive(update);
        } catch (error) {
          this.logger.error({ err: error, update_id: update.update_id }, "update could not be recorded; not acknowledged, fetched again after a pause");
        }
        if (!acknowledges(ack)) {
          // Not recorded: the offset stays before it; Telegram hands it (and what follows) again.
          await sleep(backoff, signal);
          backoff = Math.min(30_000, backoff * 2);
          break;
        }
        offset = update.update_id + 1;
      }
      if (updates.length === 0 && Date.now() - started < 200) await sleep(this.options.idlePauseMs ?? 300, signal);
    }
  }

  /**
   * Registers `<tg.webhook.url>/tg/<bot>` with Telegram (setWebhook with the secret token and the
   * update types we handle). The owner calls it; every instance serves the path.
   */
  private async setWebhook(): Promise<void> {
    const wh = this.bot.tg!.webhook!;
    const url = webhookUrl(wh.url, this.bot.name);
    await this.telegraf.telegram.setWebhook(url, { secret_token: wh.secret_token, allowed_updates: [...ALLOWED_UPDATES] });
    this.logger.info({ url }, "telegram webhook set");
  }

  /**
   * One webhook call on the instance's HTTP ingress (`POST /tg/<bot>`), through the handler every
   * pushed channel shares ({@link servePushed}: 405, 413, 400, then 200 or 503 with
   * `Retry-After`). Telegram's parts: a wrong `X-Telegram-Bot-Api-Secret-Token` → 403 before the
   * body is read; a body without a numeric `update_id` is not an Update (400, logged and
   * skipped; Telegram would resend the same body for ever); 200 only once {@link receive} gave a
   * positive result (recorded, a duplicate, ignored by rule, a command answered from config; the
   * answer follows), else 503, so Telegram sends it again. Source: Bot API setWebhook.
   */
  handleHttp(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    return servePushed<Update>(req, res, {
      logger: this.logger,
      maxBodyBytes: this.options.maxBodyBytes ?? MAX_PUSHED_BODY_BYTES,
      authorize: (r) => this.secretTokenOk(r),
      parse: (json) => (isUpdate(json) ? json : undefined),
      notAnUpdate: "webhook body is not a Telegram Update; skipped",
      receive: async (update) => acknowledges(await this.receive(update)),
      describe: (update) => ({ update_id: update.update_id }),
      notRecorded: "webhook update could not be recorded; answered 503, Telegram will resend it",
      unavailableBody: "unavailable",
    });
  }

  /** Whether a webhook call carries the configured secret (Telegram sends it in `X-Telegram-Bot-Api-Secret-Token`, setWebhook `secret_token`); a wrong one is logged. */
  private secretTokenOk(req: http.IncomingMessage): boolean {
    const given = Buffer.from(String(req.headers["x-telegram-bot-api-secret-token"] ?? ""));
    const expected = Buffer.from(this.bot.tg!.webhook!.secret_token);
    if (given.length === expected.length && timingSafeEqual(given, expected)) return true;
    this.logger.warn({ remote: req.socket.remoteAddress }, "webhook call with a wrong secret token refused");
    return false;
  }

  async stop(): Promise<void> {
    this.tracker.stopped("stopped");
    this.abort.abort();
    await this.loop;
  }

  /**
   * Sends an answer (Bot API sendMessage), from part `progress.fromPart`; in groups it replies to
   * the user's message. With the reply's format (`OutgoingReply.format`, else the bot's `reply.format`) `markdown` the text is rendered to entities
   * (src/lib/markdown.ts) and split at 4096 UTF-16 units without breaking an entity; with
   * `plain` it goes as written, split at 4096. The parts depend only on the text and
   * the format, so a later attempt sends the same parts. A part whose entities Telegram
   * refuses (400 about entities) goes again without them, once. A part is retried only when it
   * was not delivered: refused with 429/5xx, or failed before its request was written.
   * `reply.buttons` become an inline keyboard and `reply.requestContact` a one-time "share my
   * phone" keyboard under the last part; with `reply.document` it is one sendDocument with the
   * text as caption.
   * @returns the first part's `message_id` (of those sent by this call)
   * @throws UnconfirmedSendError when a request was written and its connection failed (never retried)
   * @throws ChannelError after retries, or at once for 400/403 (blocked by the user, chat gone)
   */
  async send(to: DeliveryTarget, reply: OutgoingReply, progress?: SendProgress): Promise<Delivery> {
    const replyTo = typeof to.target.reply_to_message_id === "number" ? to.target.reply_to_message_id : undefined;
    if (reply.document) return this.sendDocument(to.chatId, reply.document, reply.text, progress, reply.format);
    const parts = (reply.format ?? this.bot.reply.format) === "markdown" ? splitFormatted(markdownToEntities(reply.text), TG_MAX_TEXT) : plainParts(reply.text);
    return this.sendParts(to.chatId, parts, replyTo, reply.requestContact, reply.buttons, progress);
  }

  /**
   * The draft of an answer in a private chat (Bot API `sendMessageDraft`, see {@link TelegramDraft});
   * undefined in groups (their thread key carries the user: `tg:<chat_id>:<user_id>`). Draft
   * calls go around the write gate and its retries: a failure is logged at debug and ends the
   * drafts of this answer.
   */
  draft(to: DeliveryTarget): DraftSession | undefined {
    const chatId = Number(to.chatId);
    if (!Number.isSafeInteger(chatId) || chatId <= 0 || to.threadKey !== `tg:${to.chatId}`) return undefined;
    return new TelegramDraft({
      call: (draftId, text) => {
        // Formatted as the answer will be (its first part, with the same entities).
        const shown = this.bot.reply.format === "markdown" ? splitFormatted(markdownToEntities(text), TG_MAX_TEXT)[0] : undefined;
        const params = shown
          ? { chat_id: chatId, draft_id: draftId, text: shown.text, entities: shown.entities }
          : { chat_id: chatId, draft_id: draftId, text };
        return outsideGate(() =>
          this.telegraf.telegram.callApi("sendMessageDraft" as never, params as never, {
            // A preview that comes later than this is of no use; a timeout ends the drafts.
            signal: AbortSignal.timeout(DRAFT_TIMEOUT_MS) as never,
          }),
        );
      },
      onFailure: (error) => this.logger.debug({ err: toChannelError(error, "sendMessageDraft") }, "sendMessageDraft failed; no more drafts for this answer"),
    });
  }

  /**
   * Shows "typing…" (Bot API sendChatAction `typing`) in the chat once the answer has taken
   * `typingAfterMs`, and every `typingEveryMs` after it, until the returned function is called.
   * Best effort: a failed call is logged at debug and changes nothing else; the calls do not go
   * through the write gate (they are not answers; made outside any send).
   * @returns stops it (idempotent)
   */
  typing(to: DeliveryTarget): () => void {
    return keepTyping(
      () => this.telegraf.telegram.sendChatAction(to.chatId, "typing"),
      this.options.typingEveryMs ?? 4000,
      (e) => this.logger.debug({ err: toChannelError(e, "sendChatAction") }, "sendChatAction failed"),
      this.options.typingAfterMs,
    );
  }

  /**
   * Sends a file with the text as its caption (Bot API sendDocument, multipart): with
   * `reply.format: markdown` the caption is rendered to `caption_entities` and cut at 1024 UTF-16
   * units at a boundary (the first part of {@link splitFormatted}); with `plain` cut at 1024.
   */
  private async sendDocument(
    chatId: string,
    doc: OutgoingDocument,
    caption: string,
    progress?: SendProgress,
    format: OutgoingReply["format"] = this.bot.reply.format,
  ): Promise<Delivery> {
    const c: FormattedText =
      format === "markdown"
        ? (splitFormatted(markdownToEntities(caption), TG_MAX_CAPTION)[0] ?? { text: "", entities: [] })
        : { text: caption.slice(0, TG_MAX_CAPTION), entities: [] };
    const sent = await this.withPlainFallback("sendDocument", c, 0, (entities) =>
      this.sendOne(
        "sendDocument",
        (tg) =>
          tg.sendDocument(
            chatId,
            { source: Buffer.from(doc.content, "utf8"), filename: doc.filename },
            { caption: c.text, ...(entities ? { caption_entities: c.entities as MessageEntity[] } : {}) },
          ),
        progress,
        0,
        1,
      ),
    );
    await progress?.delivered(0, 1, String(sent.message_id));
    return { channelMessageId: String(sent.message_id) };
  }

  /**
   * Sends one part with its entities; when Telegram refuses them (400 about entities: nothing
   * arrived), sends the same part again without them, once, and logs it at warn.
   */
  private async withPlainFallback<T>(method: string, part: FormattedText, index: number, send: (entities: boolean) => Promise<T>): Promise<T> {
    if (!part.entities.length) return send(false);
    try {
      return await send(true);
    } catch (error) {
      if (!refusesEntities(error)) throw error;
      this.logger.warn(
        { err: error, part: index, entities: part.entities.length },
        `${method}: Telegram refused the formatting; this part is sent as plain text`,
      );
      return send(false);
    }
  }

  private async sendParts(
    chatId: string,
    parts: FormattedText[],
    replyTo?: number,
    contactButton?: string,
    buttons?: Button[][],
    progress?: SendProgress,
  ): Promise<Delivery> {
    let first: string | null = null;
    for (let i = progress?.fromPart ?? 0; i < parts.length; i++) {
      const extra = {
        ...(i === 0 && replyTo ? { reply_parameters: { message_id: replyTo, allow_sending_without_reply: true } } : {}),
        ...(i === parts.length - 1 && buttons?.length
          ? { reply_markup: { inline_keyboard: buttons.map((row) => row.map((b) => ({ text: b.label, callback_data: b.data }))) } }
          : {}),
        ...(i === parts.length - 1 && contactButton
          ? { reply_markup: { keyboard: [[{ text: contactButton, request_contact: true }]], one_time_keyboard: true, resize_keyboard: true } }
          : {}),
      };
      const part = parts[i]!;
      const sent = await this.withPlainFallback("sendMessage", part, i, (entities) =>
        this.sendOne(
          "sendMessage",
          (tg) => tg.sendMessage(chatId, part.text, { ...extra, ...(entities ? { entities: part.entities as MessageEntity[] } : {}) }),
          progress,
          i,
          parts.length,
        ),
      );
      first ??= String(sent.message_id);
      await progress?.delivered(i, parts.length, String(sent.message_id));
    }
    return { channelMessageId: first };
  }

  /**
   * A Bot API client for one request of a send: the bot's own settings, with an agent that holds
   * this request back for `gate` (src/channels/write-gate.ts `gatedAgentFor`) on the shared
   * keep-alive connections.
   */
  private gatedTelegram(gate: WriteGate): Telegraf["telegram"] {
    const shared = this.telegraf.telegram;
    const tg = new (shared.constructor as new (token: string, options: typeof shared.options) => Telegraf["telegram"])(this.bot.tg!.token, shared.options);
    // Set after construction: telegraf drops a given agent for http:// roots (as in create).
    tg.options.agent = gatedAgentFor(gate, shared.options.agent as http.Agent);
    return tg;
  }

  /** One Bot API send through the write gate, with our retry policy (see {@link gatedSend}). */
  private sendOne<T>(
    method: string,
    call: (tg: Telegraf["telegram"]) => Promise<T>,
    progress: SendProgress | undefined,
    part: number,
    parts: number,
  ): Promise<T> {
    return gatedSend({
      method,
      call: (gate) => call(this.gatedTelegram(gate)).catch((e) => Promise.reject(toChannelError(e, method))),
      routed: true,
      classify: classifyHttpError,
      progress,
      part,
      parts,
      retries: this.options.sendRetries ?? 4,
      baseMs: this.options.backoffMs ?? 1000,
      onRetry: (e, attempt, wait) => this.logger.warn({ err: e, attempt, wait_ms: Math.round(wait) }, `${method} failed before it was delivered; retrying`),
    });
  }
}

/** Telegram's longest caption (sendDocument `caption`), UTF-16 code units. */
const TG_MAX_CAPTION = 1024;

/** Text sent as written, split at Telegram's limit (`reply.format: plain`, `/start`, `/help`). */
function plainParts(text: string): FormattedText[] {
  return splitText(text, TG_MAX_TEXT).map((t) => ({ text: t, entities: [] }));
}

/**
 * True for a Bot API 400 about a message's formatting ("can't parse entities", an entity's
 * bounds or URL refused): nothing was delivered, so the part may go again without entities.
 */
export function refusesEntities(error: unknown): boolean {
  const e = error as { status?: number; message?: string } | undefined;
  return e?.status === 400 && /entit|\burl\b/i.test(e.message ?? "");
}

/** Maps telegraf errors (TelegramError with Bot API `error_code`, fetch errors) to ChannelError. */
export function toChannelError(error: unknown, method: string): ChannelError {
  if (error instanceof ChannelError) return error;
  const e = error as {
    code?: number | string;
    response?: { error_code?: number; description?: string; parameters?: { retry_after?: number } };
    message?: string;
    name?: string;
  };
  const status = e?.response?.error_code;
  if (typeof status === "number") {
    return new ChannelError("TG_API", `${method}: ${status} ${e.response?.description ?? ""}`.trim(), {
      cause: error,
      status,
      retryAfterS: e.response?.parameters?.retry_after,
    });
  }
  return new ChannelError("TG_NETWORK", `${method}: ${e?.message ?? String(error)}`, { cause: error });
}

/** The webhook URL of a bot: the public base `tg.webhook.url` (a path prefix kept) plus `tg/<bot>`. */
export function webhookUrl(base: string, bot: string): string {
  return new URL(`tg/${encodeURIComponent(bot)}`, base.endsWith("/") ? base : `${base}/`).toString();
}
