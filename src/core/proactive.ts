import type { BotConfig } from "../config/schema.js";
import type { Store } from "../storage/index.js";
import type { ChannelSender, Delivery } from "./types.js";

/** A message a feature sends first (a reminder, a weekly summary), not as an answer. */
export interface ProactiveMessage {
  /** Where it goes: Bot API `chat_id`, VK `peer_id`. */
  chatId: string;
  /** The conversation it belongs to (SPEC §4 thread keys). */
  threadKey: string;
  text: string;
}

/**
 * Sends a proactive message through the bot's channel and stores it as an outgoing message of
 * the thread (`reply_to_id` null, cost 0: template texts are free). The caller claims the send
 * beforehand (e.g. a delivery row) so a crash between sending and storing never sends twice.
 * @returns the channel's delivery and the stored message id
 * @throws ChannelError when the channel refuses (403: the user blocked the bot) or is unreachable
 */
export async function sendProactive(deps: { bot: BotConfig; store: Store; channel: ChannelSender; now: () => number }, m: ProactiveMessage): Promise<{ delivery: Delivery; messageId: number }> {
  const delivery = await deps.channel.send({ bot: deps.bot.name, chatId: m.chatId, threadKey: m.threadKey, kind: "messages", channelMessageId: null, target: {} }, m.text);
  const at = deps.now();
  const r = await deps.store.database.db
    .insertInto("messages")
    .values({
      bot: deps.bot.name,
      channel: deps.bot.channel,
      direction: "out",
      status: "sent",
      thread_key: m.threadKey,
      chat_id: m.chatId,
      user_id: null,
      user_name: null,
      text: m.text,
      text_hash: null,
      dedupe_key: null,
      channel_message_id: delivery.channelMessageId,
      reply_to_id: null,
      model: null,
      prompt_tokens: null,
      completion_tokens: null,
      cost: 0,
      latency_ms: null,
      error: null,
      meta: JSON.stringify({ proactive: true }),
      created_ms: at,
      updated_ms: at,
    })
    .executeTakeFirstOrThrow();
  return { delivery, messageId: Number(r.insertId) };
}
