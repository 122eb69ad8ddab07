import type { BotConfig, ChannelName } from "../config/schema.js";
import { UsageError } from "../errors.js";
import type { ChannelFactory } from "./types.js";

/**
 * Channel factories by name. Each imports its channel module (and its heavy library) only when
 * a bot of that channel is started.
 */
export const channelFactories: Partial<Record<ChannelName, ChannelFactory>> = {
  tg: async (bot, logger) => (await import("./telegram/worker.js")).TelegramWorker.create(bot, logger),
  vk: async (bot, logger, deps) => (await import("./vk/worker.js")).VkWorker.create(bot, logger, deps),
  "2gis": async (bot, logger, deps) => (await import("./twogis/worker.js")).TwoGisWorker.create(bot, logger, { store: deps.store }),
};

/**
 * The factory for a channel.
 * @throws UsageError when the channel is not available in this version
 */
export function channelFactory(name: ChannelName): ChannelFactory {
  const f = channelFactories[name];
  if (!f)
    throw new UsageError("CHANNEL_UNAVAILABLE", `channel ${name} is not yet available in this version of bots`, {
      hint: "disable bots of that channel (enabled: false) or start only tg",
    });
  return f;
}

/** True for a bot whose updates are pushed to the HTTP ingress: Telegram webhook, VK Callback API. */
export function receivesPushed(b: BotConfig): boolean {
  return (b.channel === "tg" && b.tg?.mode === "webhook") || (b.channel === "vk" && b.vk?.mode === "callback");
}
