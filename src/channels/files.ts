import type { BotConfig } from "../config/schema.js";
import { downloadImage, type ImageFetcher } from "../core/images.js";
import { ChannelError } from "../errors.js";
import { TelegramFiles, type TelegramFilesOptions } from "./telegram/files.js";

/**
 * The {@link ImageFetcher} of a bot, from its config alone (no running channel needed, so
 * `bots replay` and features can use it): a `file_id` goes through the Bot API of `tg.api_root`
 * ({@link TelegramFiles}); a URL (VK's CDN) is downloaded as is.
 */
export function imageFetcherFor(bot: BotConfig, options: TelegramFilesOptions = {}): ImageFetcher {
  const tg = bot.tg ? new TelegramFiles(bot.tg.api_root, bot.tg.token, options) : undefined;
  return {
    async fetch(ref, maxBytes, signal) {
      if (ref.file_id !== undefined) {
        if (!tg) throw new ChannelError("IMAGE_UNSUPPORTED", `a Telegram file_id on a ${bot.channel} bot cannot be fetched`);
        return tg.fetch({ ...ref, file_id: ref.file_id }, maxBytes, signal);
      }
      const host = URL.canParse(ref.url!) ? new URL(ref.url!).host : "?";
      return downloadImage(ref.url!, { maxBytes, signal, label: `picture from ${host}`, timeoutMs: options.timeoutMs, backoffMs: options.backoffMs });
    },
  };
}
