import type { Button, OutgoingDocument, PipelineContext } from "../../core/types.js";
import type { CoachingContext } from "./context.js";

// How coaching hands the pipeline its replies and its prompt section: the only places where the
// feature writes `ctx.msg.target` or `ctx.msg.vars`.

/** Sends a free reply, with rows of buttons under it when given, and marks the message answered. */
export async function reply(c: CoachingContext, ctx: PipelineContext, text: string, buttons?: Button[][]): Promise<void> {
  await sendWithButtons(ctx, text, buttons);
  await c.deps.store.messages.setStatus(ctx.id!, "answered", { from: ["received", "failed", "expired", "no_balance"], fence: ctx.fence });
  ctx.outcome = "answered";
}

/** Sends a free reply with rows of buttons under it when given; the message's status is left as is. */
export async function sendWithButtons(ctx: PipelineContext, text: string, buttons?: Button[][]): Promise<void> {
  const target = ctx.msg.target;
  // The channel reads `buttons` from the delivery target (Telegram: inline_keyboard).
  if (buttons?.length) ctx.msg.target = { ...target, buttons };
  try {
    await ctx.sendFreeReply!(text);
  } finally {
    ctx.msg.target = target;
  }
}

/** {@link reply} with a file attached, `text` as its caption (Telegram: sendDocument). */
export async function replyWithDocument(c: CoachingContext, ctx: PipelineContext, text: string, document: OutgoingDocument): Promise<void> {
  const target = ctx.msg.target;
  ctx.msg.target = { ...target, document };
  try {
    return await reply(c, ctx, text);
  } finally {
    ctx.msg.target = target;
  }
}

/**
 * Sets what the model gets as `{{coaching}}` for this message: core/pipeline.ts renders it in the
 * bot's prompt, or appends it when the prompt has no `{{coaching}}`.
 */
export function setPromptSection(ctx: PipelineContext, text: string): void {
  ctx.msg.vars = { ...ctx.msg.vars, coaching: text };
}
