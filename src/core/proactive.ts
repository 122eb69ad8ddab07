import type { Logger } from "pino";
import type { BotConfig } from "../config/schema.js";
import { describeError, FencedError, UnconfirmedSendError } from "../errors.js";
import type { LedgerRow } from "../storage/balance.js";
import { scrubSecrets } from "../secrets.js";
import type { Store } from "../storage/index.js";
import { isRetryableStorageError } from "../storage/faults.js";
import type { OwnerFence } from "../storage/owners.js";
import { withRetries } from "../lib/retry.js";
import type { ChannelSender, Delivery, SendProgress } from "./types.js";

/** What the model wrote for a proactive message (the parts of a `Completion` that are stored). */
export interface WrittenText {
  text: string;
  /** The model that answered, as the API reported it. */
  model: string;
  usage: { prompt_tokens: number; completion_tokens: number };
  /** ms */
  latencyMs: number;
}

/** A message a feature sends first (a reminder, a weekly summary), not as an answer. */
export interface ProactiveMessage {
  /** Where it goes: Bot API `chat_id`, VK `peer_id`. */
  chatId: string;
  /** The conversation it belongs to (docs/architecture.md, "Thread keys"). */
  threadKey: string;
  /** The template text: free, and what goes out whenever the model does not write it. */
  text: string;
  /** What it is (`reminder`, `weekly`), stored in the row's meta beside `proactive: true`. */
  kind?: string;
  /** The incoming message it answers, when a command asked for it (`/week`); stored as `reply_to_id`. */
  replyTo?: number;
  /**
   * Asks the model for the text. When given, the message is charged like a reply (the bot's
   * `balance.cost_per_reply`); when the balance cannot pay, the model fails or `write` returns
   * null (its text was refused, e.g. numbers it made up), the template `text` goes out free
   * and anything reserved is refunded.
   * @param signal aborted when the feature stops
   */
  write?: (signal: AbortSignal | undefined) => Promise<WrittenText | null>;
}

/** What {@link sendProactive} did. */
export interface ProactiveResult {
  delivery: Delivery;
  /** The stored outgoing row (`messages.id`). */
  messageId: number;
  /** Hundredths of a credit charged: 0 for the template. */
  cost: number;
  /** True when the model wrote the text that went out. */
  written: boolean;
}

/** What {@link sendProactive} works with. */
export interface ProactiveDeps {
  bot: BotConfig;
  store: Store;
  channel: ChannelSender;
  /** Clock, epoch ms UTC. */
  now: () => number;
  logger?: Logger;
  /** Aborts a model call in flight (the feature stops). */
  signal?: AbortSignal;
  /**
   * Scale-out: this instance's ownership of the bot. Reserving, refunding, the claim to send and
   * the record are conditional on it, so an instance that lost the bot neither sends nor books.
   */
  fence?: OwnerFence;
}

/**
 * Sends a proactive message through the bot's channel, recorded and charged by the rules of a
 * reply (docs/durability.md), written so that a kill -9 at any await leaves nothing
 * reserved for ever and never sends twice:
 *
 * 1. the message is stored first as an outgoing row of the thread (`reply_to_id` null, status
 *    `pending`, `meta.proactive`);
 * 2. with `write`, the reply's cost is reserved against that row and the model writes the text;
 * 3. the row is claimed for sending (still `pending`, with the final text), sent, and settled
 *    (`sent`, with cost, model and tokens). On a channel with gated writes (Telegram, VK) each
 *    request is marked `delivering` right before its bytes are written and back to `pending`
 *    when it was not delivered (refused, or never written), with `parts_sent`; elsewhere the
 *    claim marks it `delivering` at once. A request that may have arrived (its connection failed
 *    after it was written) is never retried: the row becomes `unconfirmed`, the charge stands.
 *
 * Recovery (src/core/recovery.ts) puts a crash right: a `pending` row with no part delivered
 * becomes `failed` and its reservation is refunded (nothing was sent); a `delivering` row, or one
 * with parts delivered, becomes `unconfirmed` and its charge stands, as for a reply cut off
 * between sending and recording. The caller claims the
 * send beforehand (e.g. a coaching delivery row), so a restart never sends it again. With
 * `fence`, every write after the first insert holds only while this instance owns the bot.
 * @returns the channel's delivery, the stored row's id and the charge
 * @throws ChannelError when the channel refuses (403: the user blocked the bot) or is unreachable;
 * the row is then `failed` and the reservation refunded (or, when some parts were delivered,
 * `sent` with the failure in `error`, charged)
 * @throws UnconfirmedSendError when a request may have arrived; the row is `unconfirmed`, charged
 * @throws FencedError when `fence` no longer holds (nothing sent; the new owner's recovery settles the row)
 */
export async function sendProactive(deps: ProactiveDeps, m: ProactiveMessage): Promise<ProactiveResult> {
  const { bot, store } = deps;
  const at = deps.now();
  const id = await store.proactive.insertPending({
    bot: bot.name,
    channel: bot.channel,
    thread_key: m.threadKey,
    chat_id: m.chatId,
    text: m.text,
    reply_to_id: m.replyTo ?? null,
    kind: m.kind,
    created_ms: at,
  });
  const log = deps.logger?.child({ msg_id: id, thread_key: m.threadKey });

  let reservation: LedgerRow | null = null;
  let written: WrittenText | null = null;
  if (m.write) {
    const { account, cost_per_reply, stop_below } = bot.balance;
    const cost = Math.round(cost_per_reply * 100);
    try {
      reservation = cost > 0 ? await store.balance.reserve(account, cost, Math.round(stop_below * 100), id, deps.fence) : null;
    } catch (error) {
      if (error instanceof FencedError) await giveUp(deps, id, null, "this instance no longer owns the bot");
      throw error;
    }
    if (cost > 0 && !reservation) log?.warn({ account }, "balance cannot pay a model-written proactive message; the template goes out, free");
    else {
      try {
        written = await m.write(deps.signal);
        if (!written) log?.warn("the model's text for a proactive message was refused; the template goes out, free");
      } catch (error) {
        if (deps.signal?.aborted) {
          await giveUp(deps, id, reservation, "stopped before sending");
          throw error;
        }
        log?.warn({ err: error }, "the model could not write a proactive message; the template goes out, free");
      }
      if (!written && reservation) {
        try {
          await store.balance.refund(reservation, "proactive message: template sent instead", deps.fence);
        } catch (error) {
          if (error instanceof FencedError) await giveUp(deps, id, null, "this instance no longer owns the bot");
          throw error;
        }
        reservation = null;
      }
    }
  }

  const text = written?.text ?? m.text;
  const gated = deps.channel.gatesWrites === true;
  let claimed: boolean;
  try {
    claimed = await store.proactive.claim(id, text, gated, deps.now(), deps.fence);
  } catch (error) {
    // Nothing was sent, whether or not the claim committed (its reply may be lost): give the row
    // up now if the database answers, else recovery finds it (`pending` refunded, `delivering`
    // left unconfirmed).
    await giveUp(deps, id, reservation, describeError(error)).catch((e) => log?.warn({ err: e }, "could not record the proactive message as not sent"));
    throw error;
  }
  if (!claimed) {
    // Another instance owns the bot now, or its recovery declared this row failed and refunded it.
    if (deps.fence) {
      await giveUp(deps, id, reservation, "this instance no longer owns the bot");
      throw new FencedError(deps.fence.bot, deps.fence.epoch);
    }
    throw new Error("proactive message was given up by recovery before it was sent");
  }
  let delivery: Delivery;
  const cost = reservation ? -Number(reservation.delta) : 0;
  let partsSent = 0;
  try {
    const progress = gated ? proactiveProgress(deps, id, (n) => (partsSent = n)) : undefined;
    delivery = await deps.channel.send(
      { bot: bot.name, chatId: m.chatId, threadKey: m.threadKey, kind: "messages", channelMessageId: null, target: {} },
      { text },
      progress,
    );
  } catch (error) {
    if (error instanceof UnconfirmedSendError || partsSent > 0) {
      // It may have arrived, or some of it did: the charge stands; never sent again.
      const unconfirmed = error instanceof UnconfirmedSendError;
      const note = `${describeError(error)}${partsSent ? `; ${partsSent} part(s) delivered before` : ""}`.slice(0, 2000);
      await store.proactive
        .recordCutOff(id, unconfirmed ? "unconfirmed" : "sent", note, cost, deps.now())
        .catch((e: unknown) => log?.warn({ err: e }, "could not record how the proactive message ended; recovery marks it unconfirmed"));
      throw error;
    }
    await giveUp(deps, id, reservation, describeError(error));
    throw error;
  }
  // Not fenced: it was sent, so the record is true whoever owns the bot now (a recovery that
  // made the row `unconfirmed` first keeps it so: the status condition below). Retried through a
  // database outage for about a minute, as the pipeline's settle is; then recovery finds it
  // `delivering` and makes it `unconfirmed` (never sent again).
  await recordThroughOutage(log, () =>
    store.proactive.recordSent(
      id,
      {
        channel_message_id: delivery.channelMessageId,
        cost,
        model: written?.model ?? null,
        prompt_tokens: written?.usage.prompt_tokens ?? null,
        completion_tokens: written?.usage.completion_tokens ?? null,
        latency_ms: written ? Math.round(written.latencyMs) : null,
      },
      deps.now(),
    ),
  );
  return { delivery, messageId: id, cost, written: written !== null };
}

/**
 * Runs the write that records a send already made, retrying while the database is away
 * ({@link isRetryableStorageError}): 200 ms doubling to 5 s, 14 retries, about a minute.
 * @throws the last error when the database stays away, or at once for any other error
 */
export function recordThroughOutage<T>(log: Logger | undefined, fn: () => Promise<T>): Promise<T> {
  return withRetries(fn, {
    retries: 14,
    baseMs: 200,
    maxMs: 5000,
    classify: (e) => ({ retry: isRetryableStorageError(e) }),
    onRetry: (e, attempt, waitMs) =>
      log?.warn({ err: e, attempt, wait_ms: Math.round(waitMs) }, "database unavailable while recording a sent message; retrying"),
  });
}

/**
 * The marks of a proactive send on a channel with gated writes: `pending` → `delivering` (fenced)
 * right before a request is written, back to `pending` with `parts_sent` once it was delivered
 * (a later part follows) or known not delivered.
 */
function proactiveProgress(deps: ProactiveDeps, id: number, onParts: (n: number) => void): SendProgress {
  const rows = deps.store.proactive;
  return {
    fromPart: 0,
    beforeWrite: (part) => rows.markWriting(id, part, deps.now(), deps.fence),
    notWritten: (part) => rows.unmarkWriting(id, part, deps.now()),
    delivered: async (part, parts) => {
      onParts(part + 1);
      if (part + 1 < parts) await rows.unmarkWriting(id, part + 1, deps.now());
    },
  };
}

/** Not sent: the row becomes `failed` and the reservation is refunded (both idempotent). */
async function giveUp(deps: ProactiveDeps, id: number, reservation: LedgerRow | null, reason: string): Promise<void> {
  try {
    if (reservation) await deps.store.balance.refund(reservation, `proactive message not sent: ${reason}`.slice(0, 255), deps.fence);
  } catch (error) {
    // Fenced: the new owner's recovery refunds it (the row is `failed` below, or made so there).
    if (!(error instanceof FencedError)) throw error;
  }
  await deps.store.proactive.fail(id, scrubSecrets(reason), deps.now());
}
