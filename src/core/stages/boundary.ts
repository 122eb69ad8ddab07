import { describeError, FencedError } from "../../errors.js";
import type { Middleware } from "../../lib/compose.js";
import { isRetryableStorageError } from "../../storage/faults.js";
import type { Store } from "../../storage/index.js";
import type { OwnerFence } from "../../storage/owners.js";
import type { AnswerContext } from "./answer.js";

/** What {@link boundaryStage} uses. */
export interface BoundaryStageDeps {
  store: Pick<Store, "balance" | "messages">;
  fence?: OwnerFence;
  /** Aborted when a drain runs out of time. */
  stopping: AbortSignal;
}

/**
 * Answer stage around model, delivery and settle: records how an answer that threw ended. A stop
 * (the drain deadline) before delivery refunds and leaves the message `received`; a database
 * outage at the claim leaves it to be answered again (`answer.unrecorded`); an answer delivered
 * but not stored stays `delivering`, charged; the rest of an answer in parts becomes `partial`;
 * anything else is refunded and `failed` (kept for replay). A lost ownership (FencedError)
 * passes through: nothing more is written.
 */
export function boundaryStage(deps: BoundaryStageDeps): Middleware<AnswerContext> {
  const { store, fence } = deps;
  return async function boundary(ctx, next) {
    const state = ctx.answer;
    try {
      await next();
    } catch (error) {
      // Lost the bot: write nothing more (the new owner's recovery refunds and answers).
      if (error instanceof FencedError) throw error;
      if (deps.stopping.aborted && !ctx.delivery) {
        // The drain deadline cut the model call (or a wait) short: give the money back and leave
        // the message `received`, so the next start answers it. Nothing stays reserved.
        ctx.outcome = "interrupted";
        try {
          if (ctx.reservation && !state.charged) await store.balance.refund(ctx.reservation, "stopped before answering", fence);
          await store.messages.setStatus(ctx.id, state.charged ? "partial" : "received", { from: ["received", "sending"], fence });
        } catch (storageError) {
          ctx.log.error({ err: storageError }, "could not record the interruption; the next start's recovery refunds it");
        }
        ctx.log.info("answer interrupted by the stop; reservation refunded, resumes at the next start");
        return;
      }
      if (state.throughOutages && state.claimTried && !state.sendStarted && isRetryableStorageError(error)) {
        // The database went away at the `delivering` claim (it may have committed): nothing was
        // sent. Not `failed`: answered again once the database answers (answerThroughOutages).
        // Replay and the 2GIS pass (answerStored) record `failed` as for any other error.
        ctx.log.warn({ err: error }, "database unavailable at the delivery claim; nothing sent");
        state.unrecorded = true;
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
      if (state.charged) {
        // The rest of an answer in parts: the parts delivered before keep their charge.
        ctx.outcome = "partial";
        ctx.log.warn({ err: error, reason }, "the rest of a partly delivered answer failed; the charge stands, bots replay --send sends the missing parts");
        try {
          await store.messages.setStatus(ctx.id, "partial", { error: reason.slice(0, 2000), from: ["sending", "delivering", "partial"], fence });
        } catch (storageError) {
          if (storageError instanceof FencedError) throw storageError;
          ctx.log.error({ err: storageError }, "could not record the failure; the next start's recovery sends the missing parts");
        }
        return;
      }
      ctx.outcome = "failed";
      ctx.log.warn({ err: error, reason }, "answer failed; reservation refunded, message kept for replay");
      try {
        if (ctx.reservation) await store.balance.refund(ctx.reservation, reason.slice(0, 255), fence);
        // `delivering`: a channel without gated writes (2GIS) whose send failed, or a mark whose
        // request was cancelled unsent; a request that may have arrived never gets here.
        await store.messages.setStatus(ctx.id, "failed", {
          error: reason.slice(0, 2000),
          from: ["received", "sending", "delivering", "no_balance", "failed", "expired"],
          fence,
        });
      } catch (storageError) {
        if (storageError instanceof FencedError) throw storageError;
        ctx.log.error({ err: storageError }, "could not record the failure");
        // The database is away: the answer is tried again when it is back (answerThroughOutages).
        // Any other failure leaves the row unsettled: parked, then resumed by the inbox sweep.
        if (isRetryableStorageError(storageError)) state.unrecorded = true;
        else state.stranded = true;
      }
    }
  };
}
