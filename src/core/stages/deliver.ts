import { describeError, FencedError, UnconfirmedSendError } from "../../errors.js";
import type { Middleware } from "../../lib/compose.js";
import { sleep } from "../../lib/retry.js";
import type { Store } from "../../storage/index.js";
import type { OwnerFence } from "../../storage/owners.js";
import type { IncomingStatus, PartialAnswer } from "../../storage/schema.js";
import type { ChannelSender, OutgoingReply, SendProgress } from "../types.js";
import { type AnswerContext, CLAIMABLE, RESENDABLE, StopError, targetOf } from "./answer.js";

/** The first mark of a gated send found the message answered, or being answered, elsewhere: nothing was written. */
class ClaimLostError extends Error {
  constructor() {
    super("the message was answered elsewhere before this answer was written");
    this.name = "ClaimLostError";
  }
}

/** What {@link deliverStage} uses. */
export interface DeliverStageDeps {
  store: Pick<Store, "messages" | "balance" | "owners">;
  channel: ChannelSender;
  /** Scale-out: the claim and the marks hold only while this instance owns the bot. */
  fence?: OwnerFence;
  /** Aborted when a drain runs out of time: nothing starts sending after it. */
  stopping: AbortSignal;
  /** Scale-out: true while this instance's lease is safely fresh (`PipelineDeps.leaseFresh`). @defaultValue always */
  leaseFresh?: () => boolean;
}

/**
 * Answer stage: sends the model's text with what features added ({@link AnswerContext.reply})
 * through the channel, written so that a send that may have arrived is never sent again
 * (docs/durability.md): the answer is claimed through its status (answered at most once; for a
 * gated channel the claim is the mark of its first request, right before its bytes go out, and
 * each later request is marked likewise), and an answer that ended
 * `unconfirmed` or `partial` keeps its charge. A stored message answered again is first looked
 * for on the channel where it can tell (2GIS).
 * @throws FencedError when another instance owns the bot now (nothing sent)
 * @throws StopError when the drain deadline came before sending started
 */
export function deliverStage(deps: DeliverStageDeps): Middleware<AnswerContext> {
  const { store, channel, fence } = deps;

  /**
   * Waits until the lease is fresh (checked every 50 ms): a heartbeat after an outage makes it so,
   * or the instance, cut off past its lease, stops the bot, and the stop ends the wait.
   * @throws StopError when the pipeline stops meanwhile
   */
  const untilLeaseFresh = async (ctx: AnswerContext): Promise<void> => {
    const fresh = deps.leaseFresh;
    if (!fresh || fresh()) return;
    ctx.log.warn("no heartbeat reached the database lately: waiting for one before sending");
    while (!fresh()) {
      await sleep(50, deps.stopping);
      if (deps.stopping.aborted) throw new StopError();
    }
  };

  /**
   * The durable marks of a gated send (see {@link SendProgress}): the row goes to `delivering`
   * right before a request is written (with the answer itself before the first of several parts),
   * back to `sending` once it was delivered or known not delivered, with `parts_sent`. The first
   * mark of an attempt is its claim too (from `claimFrom`): a row in none of those statuses was
   * answered, or is being answered, elsewhere ({@link ClaimLostError}, nothing written).
   */
  const progressOf = (ctx: AnswerContext, sent: { parts: number; of: number; firstId: string | null }, claimFrom: readonly IncomingStatus[]): SendProgress => {
    const id = ctx.id;
    let claimed = false;
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
        // It may commit even when the database's reply is lost (answerThroughOutages gives it back).
        ctx.answer.claimTried = true;
        const t = performance.now();
        const marked = await store.messages.markWriting(id, part, { delivery: keep, fence, from: claimed ? ["sending"] : claimFrom });
        ctx.timings.mark = (ctx.timings.mark ?? 0) + (performance.now() - t);
        if (marked) {
          claimed = true;
          return;
        }
        if (fence && !(await store.owners.holds(fence.bot, fence.owner, fence.epoch))) throw new FencedError(fence.bot, fence.epoch);
        if (!claimed) throw new ClaimLostError();
        throw new Error("the answer's claim was taken over before it was sent (a replay or recovery); not sent");
      },
      notWritten: async (part) => {
        await store.messages.unmarkWriting(id, part);
      },
      delivered: async (part, parts, channelMessageId) => {
        // From here something reached the channel: never answered again from the start.
        ctx.answer.sendStarted = true;
        sent.parts = part + 1;
        sent.of = parts;
        if (part === 0) sent.firstId = channelMessageId;
        // The next part's request is not written yet: resumable again, from the next part.
        if (part + 1 < parts) await store.messages.unmarkWriting(id, part + 1);
      },
    };
  };

  /** Another process (a replay) answered the message meanwhile, or is answering it: answer at most once. */
  const answeredElsewhere = async (ctx: AnswerContext): Promise<void> => {
    ctx.log.warn("message was answered elsewhere; not sending");
    if (ctx.reservation && !ctx.answer.charged) await store.balance.refund(ctx.reservation, "answered elsewhere", fence);
    ctx.outcome = "skipped";
  };

  /**
   * A gated send that ended without every part delivered. A request that may have arrived makes
   * the answer `unconfirmed`; parts delivered before a refusal make it `partial`. Both keep the
   * charge (never sent again by themselves). Nothing delivered: false, the boundary records the
   * failure and refunds.
   * @returns true when handled here
   */
  const notDelivered = async (ctx: AnswerContext, error: unknown, partsSent: number): Promise<boolean> => {
    const unconfirmed = error instanceof UnconfirmedSendError;
    if (!unconfirmed && partsSent === 0) return false;
    const cost = ctx.reservation ? -ctx.reservation.delta : 0;
    const parts = partsSent ? `; ${partsSent} part(s) delivered before` : "";
    const reason = unconfirmed ? `${describeError(error)}; not sent again${parts}` : `${describeError(error)}${parts}; bots replay --send sends the rest`;
    ctx.outcome = unconfirmed ? "unconfirmed" : "partial";
    ctx.answer.sendStarted = true;
    ctx.error = error;
    ctx.answer.parts = partsSent;
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
      await store.messages.setStatus(ctx.id, unconfirmed ? "unconfirmed" : "partial", {
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
  };

  return async function deliver(ctx, next) {
    const state = ctx.answer;
    // A stop that came while the model answered: do not start sending now.
    if (deps.stopping.aborted) throw new StopError();
    // A stored message answered again (recovery, replay, a retried review): where the channel
    // can tell, make sure an earlier attempt did not land after all.
    if (ctx.stored && !state.force && channel.checkDelivered) {
      const found = await channel.checkDelivered(targetOf(ctx));
      if (found.delivered) {
        ctx.log.info("an earlier answer is already on the channel; recorded instead of sending again");
        ctx.delivery = { channelMessageId: found.channelMessageId };
        ctx.completion = { ...ctx.completion!, text: found.text };
        return next();
      }
    }
    await untilLeaseFresh(ctx);
    const gated = channel.gatesWrites === true;
    const from: IncomingStatus[] = state.force ? [...CLAIMABLE, ...RESENDABLE] : CLAIMABLE;
    // The claim. With gated writes it is the first `delivering` mark, made right before the first
    // request's bytes go out (progress.beforeWrite): a process that dies before it leaves the
    // answer as it was, resumable. A channel without gated writes (2GIS, which can be asked later)
    // is marked `delivering` here. Until something may have reached the channel (`sendStarted`: a
    // part delivered, a request that may have arrived, or any call of an ungated channel), a
    // `sending` or `delivering` row is this attempt's with nothing sent (a reply lost, a mark
    // whose request was cancelled, an unmark that failed): the boundary and answerThroughOutages
    // take it back.
    if (!gated) {
      state.claimTried = true;
      const claimed = await store.messages.setStatus(ctx.id, "delivering", { from, fence });
      // Fenced: another instance owns the bot now (this one was paused or cut off past its lease).
      // Not sent, nothing written: the new owner's recovery refunds the reservation and answers.
      if (!claimed && fence && !(await store.owners.holds(fence.bot, fence.owner, fence.epoch))) throw new FencedError(fence.bot, fence.epoch);
      if (!claimed) return answeredElsewhere(ctx);
    }
    const t = performance.now();
    // This attempt's marks only (an answer retried through an outage comes here again).
    if (gated) ctx.timings.mark = 0;
    const sent = { parts: state.fromPart ?? 0, of: 0, firstId: null as string | null };
    let delivery;
    try {
      if (!gated) state.sendStarted = true;
      // No "typing…" renewal after the answer's send starts (it would show again under the answer).
      state.stopTyping?.();
      // What features added (buttons, a contact request) goes with the model's text.
      const reply: OutgoingReply = { ...ctx.reply, text: ctx.completion!.text };
      delivery = await channel.send(targetOf(ctx), reply, gated ? progressOf(ctx, sent, from) : undefined);
    } catch (error) {
      if (error instanceof ClaimLostError) return answeredElsewhere(ctx);
      if (error instanceof FencedError || !(await notDelivered(ctx, error, sent.parts))) throw error;
      return;
    }
    ctx.delivery = { channelMessageId: sent.firstId ?? delivery.channelMessageId };
    if (gated) state.parts = sent.of;
    ctx.timings.deliver = performance.now() - t;
    await next();
  };
}
