import type { Middleware } from "../../lib/compose.js";
import type { BotConfig } from "../../config/schema.js";
import type { Store } from "../../storage/index.js";
import { spamVerdict } from "../spam.js";
import type { PipelineContext } from "../types.js";
import { storageRetry } from "./answer.js";

/** What {@link spamStage} uses. */
export interface SpamStageDeps {
  bot: BotConfig;
  store: Pick<Store, "messages">;
  /** Clock, epoch ms UTC. */
  now: () => number;
  /** First back-off of a database blip, ms. */
  retryBaseMs: number;
  /** Retries through a database blip (intake rides a short one only). */
  retries: number;
}

/**
 * Intake stage: the spam rules (`spam:`, src/core/spam.ts) give their verdict; a filtered
 * message is still recorded (as `filtered`, `ctx.filtered` says why) by the record stage.
 */
export function spamStage(deps: SpamStageDeps): Middleware<PipelineContext> {
  return async function spam(ctx, next) {
    const reason = await storageRetry(
      () => spamVerdict(deps.bot.spam, deps.store.messages, { bot: ctx.msg.bot, userId: ctx.msg.userId, text: ctx.msg.text }, deps.now()),
      ctx.log,
      deps.retryBaseMs,
      deps.retries,
    );
    if (reason) ctx.filtered = reason;
    await next();
  };
}
