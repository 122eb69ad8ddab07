import type { BotConfig } from "../../config/schema.js";
import type { Middleware } from "../../lib/compose.js";
import { formatCredits } from "../../storage/balance.js";
import type { Store } from "../../storage/index.js";
import type { OwnerFence } from "../../storage/owners.js";
import type { OutgoingReply } from "../types.js";
import { voiceCost } from "../voice.js";
import type { AnswerContext } from "./answer.js";

/** What {@link balanceStage} and {@link standingChargeStage} use. */
export interface BalanceStageDeps {
  bot: BotConfig;
  store: Pick<Store, "balance" | "messages">;
  /** Scale-out: the reservation and the `no_balance` status hold only while this instance owns the bot. */
  fence?: OwnerFence;
  /** Sends `balance.empty_reply` (src/core/stages/free-reply.ts). */
  freeReply: (ctx: AnswerContext, reply: OutgoingReply) => Promise<void>;
}

/**
 * Answer stage: reserves `balance.cost_per_reply` (plus, for a voice message,
 * `llm.transcription.cost_per_minute` × its duration; hundredths of a credit) against the message
 * before the model is asked; settle records it as the answer's cost, the boundary refunds it when
 * the answer fails. An account that cannot pay (`stop_below`) leaves the message `no_balance`
 * (kept for replay) with `balance.empty_reply` sent once, not on replay.
 */
export function balanceStage(deps: BalanceStageDeps): Middleware<AnswerContext> {
  return async function balance(ctx, next) {
    const { account, cost_per_reply, stop_below, empty_reply } = deps.bot.balance;
    // A voice message's transcription is paid with its answer, in the same reservation.
    const cost = Math.round(cost_per_reply * 100) + voiceCost(deps.bot, ctx.msg.voice);
    if (cost > 0) {
      ctx.reservation = await deps.store.balance.reserve(account, cost, Math.round(stop_below * 100), ctx.id, deps.fence);
      if (!ctx.reservation) {
        ctx.outcome = "no_balance";
        await deps.store.messages.setStatus(ctx.id, "no_balance", { error: `account ${account} cannot pay ${cost / 100}`, fence: deps.fence });
        ctx.log.warn({ account }, "balance cannot pay a reply; message kept for replay");
        if (empty_reply && (!ctx.stored || ctx.answer.resumed)) await deps.freeReply(ctx, { text: empty_reply });
        return;
      }
      ctx.log.debug({ account, cost_credits: formatCredits(cost), balance_after_credits: formatCredits(ctx.reservation.balance_after) }, "cost reserved");
    }
    await next();
  };
}

/**
 * Answer stage of the rest of an answer in parts: the reservation made with the first parts
 * stands, and settle records it as the answer's cost.
 */
export function standingChargeStage(deps: Pick<BalanceStageDeps, "store">): Middleware<AnswerContext> {
  return async function standingCharge(ctx, next) {
    ctx.reservation = (await deps.store.balance.openReservation(ctx.id)) ?? null;
    await next();
  };
}
