import os from "node:os";
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { BotConfig } from "../config/schema.js";
import type { Store } from "../storage/index.js";
import { formatCredits } from "../storage/balance.js";
import { partialAnswer, type MessageRow } from "../storage/messages.js";
import type { OwnerFence } from "../storage/owners.js";
import { formatDuration } from "../lib/duration.js";
import type { DeliveryCheck } from "./types.js";

/**
 * What recovery needs of a bot's pipeline: src/core/pipeline.ts `Pipeline` implements it. Kept
 * narrow so recovery does not depend on the pipeline module.
 */
export interface ResumeTarget {
  /** True while the stored message `id` is queued, being answered, or finished lately. */
  holds(id: number): boolean;
  /** Queues a stored message for an answer behind its thread's queued ones. @returns false when it already holds the message */
  resume(row: MessageRow): boolean;
}

/** What {@link recoverBot} works with. */
export interface RecoveryDeps {
  bot: BotConfig;
  store: Store;
  /** The bot's pipeline: resumed messages are queued on it. */
  pipeline: ResumeTarget;
  logger: Logger;
  /** Who runs it, stored with the run (`host:pid:random`). */
  holder: string;
  /**
   * Asks the channel whether a cut-off answer arrived. Without it (Telegram, VK: no way to ask)
   * `delivering` rows become `unconfirmed`.
   * @throws when the channel cannot be asked now (the row stays `delivering`; the next run asks again)
   */
  checkDelivered?: (row: MessageRow) => Promise<DeliveryCheck>;
  /** Clock, epoch ms UTC. @defaultValue Date.now */
  now?: () => number;
  /** Scale-out: the owner's fence; every write of the run is conditional on it (FencedError otherwise). */
  fence?: OwnerFence;
}

/** What one recovery run did; stored in `recoveries` and shown by `bots status`. */
export interface RecoveryReport {
  bot: string;
  /** Messages queued for an answer again. */
  resumed: number;
  /** Reservations without an answer given back. */
  refunded: number;
  /** Messages older than `recovery.resume_within`, now `expired`. */
  expired: number;
  /** `delivering` rows the channel cannot confirm, now `unconfirmed` (charge stands). */
  unconfirmed: number;
  /** `delivering` rows the channel confirmed (2GIS), now `answered`. */
  confirmed: number;
  /** `delivering` rows that could not be checked now (left for the next run). */
  unchecked: number;
  /** Ids of the resumed messages, in the order queued. */
  resumedIds: number[];
}

/**
 * Recovery of one bot when it starts (docs/durability.md), before it
 * receives anything new. Run it as the bot's owner (scale-out ownership, `bot_owners`, taken
 * with a new epoch; src/core/ownership.ts), so two processes never recover the same bot at once.
 *
 * 1. Rows left `delivering` (the process died while a request of the answer was being written
 *    or before its outcome was recorded): with `checkDelivered` (2GIS) the channel is asked:
 *    delivered → `answered` with the found text; not delivered → back to `received` (answered
 *    again below, once). Without it (Telegram, VK) → `unconfirmed`: the charge stands and it is
 *    never sent again by itself. Rows left `sending` (claimed, no request being written: the
 *    process died before the bytes went out) → `received`, answered again below; with parts
 *    already delivered → `partial`, and below only the missing parts of the same text are sent
 *    (the charge stands).
 *    Proactive messages (src/core/proactive.ts) left `pending` become `failed` (not sent);
 *    those left `delivering`, or `pending` with parts delivered, become `unconfirmed` (the
 *    charge stands). Neither is sent again.
 * 2. Reservations with no answer (the ledger's `reserve` rows of the bot's messages that are not
 *    `answered`/`unconfirmed`/`delivering`/`sent` and were never refunded) are refunded, once
 *    each (the refund is unique per reservation).
 * 3. `received` rows younger than `recovery.resume_within` (any age on 2GIS) are queued on the
 *    pipeline in arrival order ({@link ResumeTarget.resume}); older ones become `expired` with the
 *    reason. The `partial` rows of step 1 are queued among them, whatever their age.
 *
 * Every step is conditional on the row's status, so a kill -9 in the middle leaves nothing
 * that the next run does not finish.
 * @throws StorageError when the database fails (the bot should not start receiving)
 */
export async function recoverBot(deps: RecoveryDeps): Promise<RecoveryReport> {
  const { bot, store, pipeline, logger } = deps;
  const now = deps.now ?? Date.now;
  const started = now();
  const report: RecoveryReport = { bot: bot.name, resumed: 0, refunded: 0, expired: 0, unconfirmed: 0, confirmed: 0, unchecked: 0, resumedIds: [] };

  // 1a. Answers claimed and cut off before a request was written: resumable.
  const partial: MessageRow[] = [];
  for (const row of await store.messages.selectIncoming({ bots: [bot.name], statuses: ["sending"] })) {
    if (pipeline.holds(row.id)) continue;
    const log = logger.child({ msg_id: row.id, thread_key: row.thread_key });
    const rest = (row.parts_sent ?? 0) > 0 && partialAnswer(row) !== null;
    const note = rest
      ? `the process stopped after ${row.parts_sent} part(s) of this answer were delivered; sending the rest`
      : "the process stopped before this answer was sent; answering again";
    if (await store.messages.setStatus(row.id, rest ? "partial" : "received", { error: note, from: ["sending"], fence: deps.fence })) {
      row.status = rest ? "partial" : "received";
      if (rest) partial.push(row);
      log.info(
        { parts_sent: row.parts_sent },
        rest ? "answer cut off between parts; the missing parts are sent" : "answer cut off before it was sent; answering again",
      );
    }
  }

  // 1. Answers cut off while a request was written, or between sending and recording.
  for (const row of await store.messages.selectIncoming({ bots: [bot.name], statuses: ["delivering"] })) {
    if (pipeline.holds(row.id)) continue;
    const log = logger.child({ msg_id: row.id, thread_key: row.thread_key });
    if (!deps.checkDelivered) {
      const parts = row.parts_sent ? ` (${row.parts_sent} part(s) delivered before it)` : "";
      const note = `the process stopped while this answer was being sent or before it was recorded; it may or may not have arrived (not sent again)${parts}`;
      // The charge stands: the row says what it was (its open reservation), as a settled answer does.
      const open = await store.balance.openReservation(row.id);
      const charged = open ? { cost: -Number(open.delta) } : {};
      if (await store.messages.setStatus(row.id, "unconfirmed", { error: note, from: ["delivering"], fence: deps.fence, ...charged })) {
        report.unconfirmed++;
        log.warn("answer unconfirmed: cut off between sending and recording; not sent again");
      }
      continue;
    }
    let check: DeliveryCheck;
    try {
      check = await deps.checkDelivered(row);
    } catch (error) {
      report.unchecked++;
      log.warn({ err: error }, "could not ask the channel whether a cut-off answer arrived; asking again next run");
      continue;
    }
    if (check.delivered) {
      const open = await store.balance.openReservation(row.id);
      await store.messages.settle(
        {
          incoming: row,
          text: check.text,
          channel_message_id: check.channelMessageId,
          model: null,
          prompt_tokens: null,
          completion_tokens: null,
          cost: open ? -open.delta : 0,
          latency_ms: null,
          created_ms: now(),
        },
        deps.fence,
      );
      report.confirmed++;
      log.info("cut-off answer found on the channel; recorded as answered");
    } else if (
      await store.messages.setStatus(row.id, "received", {
        error: "answer was cut off before the channel took it; answering again",
        from: ["delivering"],
        fence: deps.fence,
      })
    ) {
      row.status = "received";
      log.info("cut-off answer not on the channel; answering again");
    }
  }

  // 1b. Proactive messages (reminders, summaries) cut off: never sent again by themselves (the
  // feature claimed them once). `pending` was not sent: failed, and step 2 refunds it.
  // `delivering` may have arrived: unconfirmed, the charge stands, as for an answer.
  for (const row of await store.messages.outgoingInStatus(bot.name, ["pending", "delivering"])) {
    const sent = row.status === "delivering" || (row.parts_sent ?? 0) > 0;
    const note = sent
      ? "the process stopped between sending this proactive message and recording it; it may or may not have arrived (not sent again)"
      : "the process stopped before sending this proactive message; not sent";
    if (!(await store.proactive.recover(row.id, row.status === "delivering" ? "delivering" : "pending", sent, note, now(), deps.fence))) continue;
    if (sent) report.unconfirmed++;
    logger
      .child({ msg_id: row.id, thread_key: row.thread_key })
      .warn(
        sent ? "proactive message unconfirmed: cut off between sending and recording; not sent again" : "proactive message cut off before sending; not sent",
      );
  }

  // 2. Money reserved for answers that never came.
  for (const r of await store.balance.openReservationsOfBot(bot.name)) {
    // Ours and still being answered (a recovery that runs after this process started receiving).
    if (r.message_id !== null && pipeline.holds(r.message_id)) continue;
    if (await store.balance.refund(r, "recovery: no answer was sent", deps.fence)) {
      report.refunded++;
      logger.info({ msg_id: r.message_id, amount_credits: formatCredits(-r.delta), status: r.message_status }, "reservation without an answer refunded");
    }
  }

  // 3. Messages recorded but never answered.
  const waiting = [...(await store.messages.selectIncoming({ bots: [bot.name], statuses: ["received"] })), ...partial].sort((a, b) => a.id - b.id);
  const picked = await resumeReceived(deps, waiting);
  report.resumed = picked.resumedIds.length;
  report.resumedIds = picked.resumedIds;
  report.expired = picked.expired;

  await store.recoveries.record({
    bot: bot.name,
    holder: deps.holder,
    resumed: report.resumed,
    refunded: report.refunded,
    expired: report.expired,
    unconfirmed: report.unconfirmed,
    confirmed: report.confirmed,
    started_ms: started,
    finished_ms: now(),
  });
  logger.info(
    {
      resumed: report.resumed,
      refunded: report.refunded,
      expired: report.expired,
      unconfirmed: report.unconfirmed,
      confirmed: report.confirmed,
      ...(report.unchecked ? { unchecked: report.unchecked } : {}),
    },
    "recovery done",
  );
  return report;
}

/**
 * Queues stored `received` rows of one bot on its pipeline in the order given (arrival order),
 * skipping those it holds already; rows older than `recovery.resume_within` (no limit on 2GIS)
 * become `expired` with the reason instead. `partial` rows (an answer in parts cut off between
 * parts) are queued whatever their age: their charge stands and the rest is owed. Step 3 of {@link recoverBot}, and what the owner's
 * inbox sweep does with rows that another instance (or this one while it did not own the bot)
 * recorded.
 * @returns ids queued, and how many rows expired
 * @throws FencedError when `deps.fence` no longer holds
 */
export async function resumeReceived(
  deps: Pick<RecoveryDeps, "bot" | "store" | "pipeline" | "now" | "fence">,
  rows: MessageRow[],
): Promise<{ resumedIds: number[]; expired: number }> {
  const { bot, store, pipeline } = deps;
  const limitMs = bot.channel === "2gis" ? Infinity : bot.recovery.resume_within;
  const cutoff = limitMs === Infinity ? -Infinity : (deps.now ?? Date.now)() - limitMs;
  const out = { resumedIds: [] as number[], expired: 0 };
  for (const row of rows) {
    if ((row.status !== "received" && row.status !== "partial") || row.bot !== bot.name || pipeline.holds(row.id)) continue;
    if (row.status === "received" && row.created_ms < cutoff) {
      const reason =
        limitMs === 0
          ? "stranded by a stop or crash; resuming is off (recovery.resume_within: 0); answer it with bots replay --send"
          : `stranded by a stop or crash and older than recovery.resume_within (${formatDuration(limitMs)}) at the next start; answer it with bots replay --send`;
      if (await store.messages.setStatus(row.id, "expired", { error: reason, from: ["received"], fence: deps.fence })) out.expired++;
      continue;
    }
    if (pipeline.resume(row)) out.resumedIds.push(row.id);
  }
  return out;
}

/** A holder id for this process: `host:pid:random`. */
export function processHolder(): string {
  return `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
}

/** Describes a recovery for logs and status: `resumed 12, refunded 3, expired 0`. */
export function describeRecovery(r: Pick<RecoveryReport, "resumed" | "refunded" | "expired" | "unconfirmed" | "confirmed">): string {
  const parts = [`resumed ${r.resumed}`, `refunded ${r.refunded}`, `expired ${r.expired}`];
  if (r.unconfirmed) parts.push(`unconfirmed ${r.unconfirmed}`);
  if (r.confirmed) parts.push(`confirmed ${r.confirmed}`);
  return parts.join(", ");
}
