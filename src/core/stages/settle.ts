import type { Middleware } from "../../lib/compose.js";
import { formatCredits } from "../../storage/balance.js";
import type { Store } from "../../storage/index.js";
import type { OwnerFence } from "../../storage/owners.js";
import { type AnswerContext, incomingRef, storageRetry } from "./answer.js";

/** What {@link settleStage} uses. */
export interface SettleStageDeps {
  store: Pick<Store, "messages">;
  /** Scale-out: the settle holds only while this instance owns the bot. */
  fence?: OwnerFence;
  /** Clock, epoch ms UTC. */
  now: () => number;
  /** First back-off of a database blip, ms. */
  retryBaseMs: number;
}

/**
 * Answer stage after a delivery: stores the answer and marks the message `answered` with the
 * reservation as its cost (one transaction, `messages.settle`), retried through a database
 * outage for about a minute; after that the row stays `delivering` (recovery makes it
 * `unconfirmed`, never sent again). Sets `ctx.answerId`.
 */
export function settleStage(deps: SettleStageDeps): Middleware<AnswerContext> {
  return async function settle(ctx, next) {
    const c = ctx.completion!;
    const parts = ctx.answer.parts;
    ctx.answerId = await storageRetry(
      () =>
        deps.store.messages.settle(
          {
            incoming: incomingRef(ctx),
            text: c.text,
            channel_message_id: ctx.delivery?.channelMessageId ?? null,
            model: c.model,
            prompt_tokens: c.usage.prompt_tokens,
            completion_tokens: c.usage.completion_tokens,
            cost: ctx.reservation ? -ctx.reservation.delta : 0,
            latency_ms: c.latencyMs,
            created_ms: deps.now(),
            ...(typeof parts === "number" ? { parts } : {}),
          },
          deps.fence,
        ),
      ctx.log,
      deps.retryBaseMs,
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
}
