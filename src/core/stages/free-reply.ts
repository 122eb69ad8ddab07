import { UnconfirmedSendError } from "../../errors.js";
import type { Store } from "../../storage/index.js";
import type { ChannelSender, OutgoingReply } from "../types.js";
import { type AnswerContext, incomingRef, targetOf } from "./answer.js";

/** What {@link freeReplySender} uses. */
export interface FreeReplyDeps {
  store: Pick<Store, "messages">;
  channel: ChannelSender;
  /** Clock, epoch ms UTC. */
  now: () => number;
}

/**
 * Sends a fixed text (not from the model: `empty_reply`, `no_vision_reply`, a feature's reply)
 * as the answer to a message, free of charge, and stores it as an outgoing message; the incoming
 * message's status is left to the caller. Never throws: a failed send is logged, and a send that
 * may have arrived is never sent again.
 */
export function freeReplySender(deps: FreeReplyDeps): (ctx: AnswerContext, reply: OutgoingReply) => Promise<void> {
  return async (ctx, reply) => {
    try {
      const d = await deps.channel.send(targetOf(ctx), reply);
      await deps.store.messages.recordOutgoing({
        incoming: incomingRef(ctx),
        text: reply.text,
        channel_message_id: d.channelMessageId,
        model: null,
        prompt_tokens: null,
        completion_tokens: null,
        cost: 0,
        latency_ms: null,
        created_ms: deps.now(),
      });
    } catch (error) {
      // Never sent again: a request that may have arrived is not retried by the channel either.
      if (error instanceof UnconfirmedSendError)
        ctx.log.warn({ err: error }, "free reply (empty_reply, expired_reply) unconfirmed: the connection failed after it was sent; not sent again");
      else ctx.log.warn({ err: error }, "free reply (empty_reply, expired_reply) could not be sent");
    }
  };
}
