import type { BotConfig } from "../../config/schema.js";
import type { Middleware } from "../../lib/compose.js";
import type { ChatMessage } from "../../llm/client.js";
import { loadPrompt, renderPrompt } from "../../llm/prompt.js";
import type { Store } from "../../storage/index.js";
import { type ImageFetcher, loadImages, withPlaceholder } from "../images.js";
import type { ChannelSender, IncomingMessage, PromptSection } from "../types.js";
import { type AnswerContext, targetOf } from "./answer.js";

/** What {@link contextStage} uses. */
export interface ContextStageDeps {
  bot: BotConfig;
  store: Pick<Store, "messages">;
  /** Clock, epoch ms UTC (the prompt's `{{now}}`). */
  now: () => number;
  /** Fetches pictures for the model (`llm.vision`); without it pictures are placeholders. */
  images?: ImageFetcher;
  /** Aborted when a drain runs out of time: a picture download stops. */
  stopping: AbortSignal;
  /** The channel's "typing…" sign, when it has one. */
  channel: Pick<ChannelSender, "typing">;
}

/**
 * Answer stage: builds the chat for the model ({@link buildPrompt}, with the prompt sections
 * features added) and fetches the message's pictures now, not when received, so a replay or a
 * recovery fetches them again. Shows "typing…" from now until the deliver stage starts the send
 * (or the answer ends otherwise).
 */
export function contextStage(deps: ContextStageDeps): Middleware<AnswerContext> {
  return async function context(ctx, next) {
    const stopTyping = deps.channel.typing?.(targetOf(ctx)) ?? (() => {});
    ctx.answer.stopTyping = stopTyping;
    try {
      ctx.prompt = await buildPrompt(deps.bot, deps.store, ctx.msg, ctx.id, deps.now(), ctx.promptSections);
      ctx.answer.images = await loadImages(deps.bot, ctx.msg.images, deps.images, ctx.log, deps.stopping);
      await next();
    } finally {
      stopTyping();
    }
  };
}

/**
 * The chat sent to the model for a message: the bot's system prompt for the
 * message's kind rendered at `nowMs` (epoch ms UTC) with the `sections` features computed for
 * this answer (each where the prompt places `{{name}}`, else appended in order), the last
 * `history.max_messages` turns of the thread stored before message `id`, then the message itself.
 * @throws ConfigError when the prompt file cannot be read
 */
export async function buildPrompt(
  bot: BotConfig,
  store: Pick<Store, "messages">,
  msg: IncomingMessage,
  id: number,
  nowMs: number,
  sections: readonly PromptSection[] = [],
): Promise<ChatMessage[]> {
  const template = loadPrompt(bot, msg.kind);
  const extra = sections.length ? { ...msg.vars, ...Object.fromEntries(sections.map((p) => [p.name, p.text])) } : msg.vars;
  let system = renderPrompt(template, { botName: bot.name, timezone: bot.timezone, nowMs, extra });
  // A comment means little without its post: a prompt that does not place {{post_text}} gets it appended.
  const postText = msg.vars?.post_text;
  if (postText && !placed(template, "post_text")) system += `\n\nPost being commented on:\n${postText}`;
  for (const p of sections) if (p.text && !placed(template, p.name)) system += `\n\n${p.text}`;
  const history = await store.messages.history(bot.name, msg.threadKey, id, bot.history.max_messages);
  // Earlier pictures are not sent again: a placeholder says they were there.
  return [
    { role: "system", content: system },
    ...history.map((t): ChatMessage => ({ role: t.role, content: withPlaceholder(t.text, t.images ?? 0) })),
    { role: "user", content: msg.text },
  ];
}

/** True when a prompt template places the variable `name` (`{{name}}`, spaces allowed inside). */
function placed(template: string, name: string): boolean {
  return template.includes("{{") && new RegExp(`\\{\\{\\s*${name.replace(/[^\w]/g, "\\$&")}\\s*\\}\\}`).test(template);
}
