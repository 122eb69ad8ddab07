import type { BotConfig } from "../../config/schema.js";
import type { Middleware } from "../../lib/compose.js";
import { sleep } from "../../lib/retry.js";
import type { LlmClient } from "../../llm/client.js";
import { completeWithImages } from "../images.js";
import type { Semaphore } from "../queue.js";
import type { ChannelSender } from "../types.js";
import { type AnswerContext, StopError, targetOf } from "./answer.js";

/** Longest wait, after the model answered, for a draft call still in flight, ms. */
export const DRAFT_SETTLE_MS = 2000;

/** What {@link generateStage} uses. */
export interface GenerateStageDeps {
  bot: BotConfig;
  llm: LlmClient;
  /** Bounds model calls in flight: `llm.concurrency`, shared by every answer of the bot. */
  slots: Semaphore;
  /** Aborted when a drain runs out of time: the model call stops, a waiting one does not start. */
  stopping: AbortSignal;
  /** The channel's drafts (Telegram private chats), shown while the model streams with `llm.stream`. */
  channel: Pick<ChannelSender, "draft">;
}

/**
 * Answer stage: asks the model (with the pictures the context stage fetched and the features'
 * tools) once a model slot is free; `ctx.timings.modelWait` is the wait for it, ms.
 * @throws StopError when the drain deadline came while waiting
 */
export function generateStage(deps: GenerateStageDeps): Middleware<AnswerContext> {
  return async function generate(ctx, next) {
    const queued = performance.now();
    const signal = deps.stopping;
    let draftSettled: Promise<void> | undefined;
    ctx.completion = await deps.slots.run(async () => {
      ctx.timings.modelWait = performance.now() - queued;
      if (signal.aborted) throw new StopError();
      // `llm.stream`: the text so far shows as a draft where the channel has them (not recorded,
      // not charged); the answer is delivered by the deliver stage as without it.
      const draft = deps.bot.llm.stream ? deps.channel.draft?.(targetOf(ctx)) : undefined;
      try {
        return await completeWithImages(
          deps.llm,
          deps.bot,
          ctx.prompt!,
          ctx.answer.images ?? { parts: [], left: 0 },
          { tools: ctx.tools, context: ctx, signal, onDelta: draft ? (text) => draft.update(text) : undefined },
          ctx.log,
        );
      } finally {
        draftSettled = draft?.stop();
      }
    });
    // A draft call still in flight is answered before the answer goes out (outside the model
    // slot), else it could reach the chat after the answer and show the preview again; a slow
    // one is waited for {@link DRAFT_SETTLE_MS} at most.
    if (draftSettled) {
      const waited = new AbortController();
      await Promise.race([draftSettled, sleep(DRAFT_SETTLE_MS, waited.signal)]);
      waited.abort();
    }
    ctx.log.debug({ model: ctx.completion.model, ...ctx.completion.usage, latency_ms: ctx.completion.latencyMs }, "model answered");
    await next();
  };
}
