import type { BotConfig } from "../config/schema.js";
import { downloadBytes, downloadImage, type ImageFetcher } from "../core/images.js";
import { audioExtension, audioMimeOf, audioTooLarge, type AudioFetcher } from "../core/voice.js";
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

/**
 * The {@link AudioFetcher} of a bot, from its config alone: a `file_id` goes through the Bot API
 * of `tg.api_root` ({@link TelegramFiles.fetchAudio}: `getFile`, then the file URL, which holds
 * the token and stays here); a URL (VK `link_ogg` / `link_mp3`) is downloaded as is. The format
 * comes from the channel's `mime`, else from the file's extension.
 */
export function audioFetcherFor(bot: BotConfig, options: TelegramFilesOptions = {}): AudioFetcher {
  const tg = bot.tg ? new TelegramFiles(bot.tg.api_root, bot.tg.token, options) : undefined;
  return {
    async fetch(ref, maxBytes, signal) {
      const name = ref.kind === "video_note" ? "note" : "voice";
      if (ref.file_id !== undefined) {
        if (!tg) throw new ChannelError("AUDIO_UNSUPPORTED", `a Telegram file_id on a ${bot.channel} bot cannot be fetched`);
        const got = await tg.fetchAudio(ref.file_id, maxBytes, signal);
        const mime = ref.mime ?? audioMimeOf(got.filePath);
        return { bytes: got.bytes, mime, filename: `${name}.${audioExtension(mime)}` };
      }
      if (ref.url === undefined) throw new ChannelError("AUDIO_UNSUPPORTED", "a voice message without a file_id or URL cannot be fetched");
      const url = new URL(ref.url);
      const label = `voice from ${url.host}`;
      const bytes = await downloadBytes(ref.url, {
        maxBytes,
        signal,
        label,
        timeoutMs: options.timeoutMs,
        backoffMs: options.backoffMs,
        code: "AUDIO",
        tooLarge: (size, atLeast) => audioTooLarge(label, size, maxBytes, atLeast),
      });
      const mime = ref.mime ?? audioMimeOf(url.pathname);
      return { bytes, mime, filename: `${name}.${audioExtension(mime)}` };
    },
  };
}
