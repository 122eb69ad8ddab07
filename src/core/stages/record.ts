import type { Middleware } from "../../lib/compose.js";
import type { Store } from "../../storage/index.js";
import { decodeMeta, type MessageRow, type StoredMeta } from "../../storage/messages.js";
import { storedImages } from "../images.js";
import { storedVoice } from "../voice.js";
import type { IncomingMessage, PipelineContext } from "../types.js";
import { storageRetry } from "./answer.js";

/** What {@link recordStage} uses. */
export interface RecordStageDeps {
  store: Pick<Store, "messages">;
  /** First back-off of a database blip, ms. */
  retryBaseMs: number;
  /** Retries through a database blip (intake rides a short one only). */
  retries: number;
  /**
   * Called for a duplicate (recorded before, maybe by another instance): the thread's earlier
   * `received` messages are queued first (`Pipeline` catch-up); not in record-only mode.
   */
  onDuplicate?: (ctx: PipelineContext) => Promise<void>;
}

/** The stored meta of an incoming message: what is needed to answer it later (src/storage/messages.ts). */
export function metaOf(m: IncomingMessage): StoredMeta {
  return {
    kind: m.kind,
    ...(m.target ? { target: m.target } : {}),
    ...(m.vars ? { vars: m.vars } : {}),
    ...(m.images?.length ? { images: m.images } : {}),
    ...(m.group ? { group: m.group } : {}),
    ...(m.button ? { button: m.button } : {}),
    ...(m.membership ? { membership: m.membership } : {}),
    ...(m.voice ? { voice: m.voice } : {}),
  };
}

/**
 * Intake stage: stores the message (`received`, or `filtered` with the spam verdict) before
 * anything slow happens. The insert dedupes on the unique `(bot, dedupe_key)`: a resent update
 * ends here as `duplicate`, without a read of its own. Sets `ctx.id`; only a message to answer
 * goes on.
 */
export function recordStage(deps: RecordStageDeps): Middleware<PipelineContext> {
  return async function record(ctx, next) {
    const m = ctx.msg;
    const id = await storageRetry(
      () =>
        deps.store.messages.insertIncoming({
          bot: m.bot,
          channel: m.channel,
          thread_key: m.threadKey,
          chat_id: m.chatId,
          user_id: m.userId,
          user_name: m.userName,
          text: m.text,
          dedupe_key: m.dedupeKey,
          channel_message_id: m.channelMessageId,
          meta: metaOf(m),
          status: ctx.filtered ? "filtered" : "received",
          error: ctx.filtered ?? null,
          created_ms: m.receivedMs,
        }),
      ctx.log,
      deps.retryBaseMs,
      deps.retries,
    );
    if (id === null) {
      ctx.outcome = "duplicate";
      ctx.log.debug({ dedupe_key: m.dedupeKey }, "duplicate dropped");
      // Recorded by another instance and not answered yet: it comes before what follows it.
      await deps.onDuplicate?.(ctx);
      return;
    }
    ctx.id = id;
    ctx.log = ctx.botLog ? ctx.botLog.child({ thread_key: m.threadKey, msg_id: id }) : ctx.log.child({ msg_id: id });
    if (ctx.filtered) {
      ctx.outcome = "filtered";
      ctx.log.info({ reason: ctx.filtered, user_id: m.userId }, "message filtered");
      return;
    }
    // One info line per outcome: an answered message's is "answer delivered" (settle), others have their own.
    ctx.log.debug({ user_id: m.userId, chars: m.text.length }, "message received");
    await next();
  };
}

/**
 * Rebuilds the IncomingMessage a stored incoming row came from (recovery, replay, the inbox
 * sweep), its meta decoded by src/storage/messages.ts.
 */
export function messageFromRow(row: MessageRow): IncomingMessage {
  const meta = decodeMeta(row.meta);
  return {
    bot: row.bot,
    channel: row.channel as IncomingMessage["channel"],
    kind: (meta.kind as IncomingMessage["kind"] | undefined) ?? "messages",
    chatId: row.chat_id,
    userId: row.user_id,
    userName: row.user_name,
    text: row.text,
    images: storedImages(meta.images),
    ...(typeof meta.group === "string" ? { group: meta.group } : {}),
    ...(meta.button ? { button: meta.button } : {}),
    ...(meta.membership ? { membership: meta.membership } : {}),
    ...(storedVoice(meta.voice) ? { voice: storedVoice(meta.voice) } : {}),
    threadKey: row.thread_key,
    dedupeKey: row.dedupe_key,
    channelMessageId: row.channel_message_id,
    target: meta.target,
    vars: meta.vars,
    receivedMs: row.created_ms,
  };
}
