import type { BotConfig } from "../../config/schema.js";
import type { Middleware } from "../../lib/compose.js";
import type { Store } from "../../storage/index.js";
import type { OwnerFence } from "../../storage/owners.js";
import type { OutgoingReply } from "../types.js";
import type { AnswerContext } from "./answer.js";

/** What {@link visionStage} uses. */
export interface VisionStageDeps {
  bot: BotConfig;
  store: Pick<Store, "messages">;
  fence?: OwnerFence;
  /** Sends `llm.vision.no_vision_reply` (src/core/stages/free-reply.ts). */
  freeReply: (ctx: AnswerContext, reply: OutgoingReply) => Promise<void>;
}

/**
 * Answer stage: a picture without text while `llm.vision.enabled` is off is not answered by the
 * model: `skipped`, with `no_vision_reply` sent once (not on replay). Everything else goes on.
 */
export function visionStage(deps: VisionStageDeps): Middleware<AnswerContext> {
  return async function vision(ctx, next) {
    const { enabled, no_vision_reply } = deps.bot.llm.vision;
    if (enabled || !ctx.msg.images?.length || ctx.msg.text.trim()) return next();
    ctx.outcome = "skipped";
    await deps.store.messages.setStatus(ctx.id, "skipped", {
      error: "picture without text; llm.vision is off",
      from: ["received", "failed", "no_balance", "expired"],
      fence: deps.fence,
    });
    ctx.log.info(
      { images: ctx.msg.images.length, no_vision_reply: no_vision_reply !== null },
      "picture without text and llm.vision.enabled is false; not answered by the model",
    );
    if (no_vision_reply && (!ctx.stored || ctx.answer.resumed)) await deps.freeReply(ctx, { text: no_vision_reply });
  };
}
