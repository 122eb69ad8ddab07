import type { Button, OutgoingDocument, PipelineContext } from "../../core/types.js";
import type { CoachingContext } from "./context.js";

// How coaching hands the pipeline its replies (free replies with buttons or a file) and its
// prompt section (`ctx.promptSections`).

/** Sends a free reply, with rows of buttons under it when given, and marks the message answered. */
export async function reply(c: CoachingContext, ctx: PipelineContext, text: string, buttons?: Button[][]): Promise<void> {
  await sendWithButtons(ctx, text, buttons);
  await c.deps.store.messages.setStatus(ctx.id!, "answered", { from: ["received", "failed", "expired", "no_balance"], fence: ctx.fence });
  ctx.outcome = "answered";
}

/** Sends a free reply with rows of buttons under it when given; the message's status is left as is. */
export async function sendWithButtons(ctx: PipelineContext, text: string, buttons?: Button[][], document?: OutgoingDocument): Promise<void> {
  // Telegram: an inline_keyboard under the text; a document goes as sendDocument with the text as caption.
  await ctx.sendFreeReply!({ text, ...(buttons?.length ? { buttons } : {}), ...(document ? { document } : {}) });
}

/** {@link reply} with a file attached, `text` as its caption (Telegram: sendDocument). */
export async function replyWithDocument(c: CoachingContext, ctx: PipelineContext, text: string, document: OutgoingDocument): Promise<void> {
  await sendWithButtons(ctx, text, undefined, document);
  await c.deps.store.messages.setStatus(ctx.id!, "answered", { from: ["received", "failed", "expired", "no_balance"], fence: ctx.fence });
  ctx.outcome = "answered";
}

/**
 * Sets what the model gets as `{{coaching}}` for this message: the context stage renders it in the
 * bot's prompt, or appends it when the prompt has no `{{coaching}}`.
 */
export function setPromptSection(ctx: PipelineContext, text: string): void {
  ctx.promptSections.push({ name: "coaching", text });
}
