import type { Middleware } from "../../lib/compose.js";
import type { Notifier } from "../types.js";
import type { AnswerContext } from "./answer.js";

/** What {@link notifyStage} uses. */
export interface NotifyStageDeps {
  /** The bot's websocket (`websocket:`); without it the stage does nothing. */
  notifier?: Notifier;
  /** Clock, epoch ms UTC. */
  now: () => number;
}

/** Last answer stage: tells the websocket an answer was stored (never blocks, never throws). */
export function notifyStage(deps: NotifyStageDeps): Middleware<AnswerContext> {
  return async function notify(ctx) {
    deps.notifier?.notify({
      type: "reply",
      bot: ctx.msg.bot,
      message_id: ctx.answerId!,
      in_reply_to: ctx.id,
      thread_key: ctx.msg.threadKey,
      at: new Date(deps.now()).toISOString(),
    });
  };
}
