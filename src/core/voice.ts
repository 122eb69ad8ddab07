import type { BotConfig } from "../config/schema.js";
import { ChannelError } from "../errors.js";
import { formatBytes } from "../lib/bytes.js";

/**
 * A voice message as the channel described it; stored in the message's meta (`voice`), so a
 * replay or a recovery finds the same audio, or, once it is transcribed, the transcript
 * (docs/voice.md). A Telegram voice is named by its Bot API `file_id` (resolved with `getFile`;
 * the file URL holds the bot token, so the audio is downloaded by us and uploaded to the model
 * API, never passed as a link), a VK `audio_message` by its `link_ogg` / `link_mp3` URL.
 */
export interface VoiceRef {
  /** What the channel called it: Bot API `Message.voice` / `audio` / `video_note`, VK `audio_message`. */
  kind: "voice" | "audio" | "video_note" | "audio_message";
  /** Bot API `file_id` (Telegram). */
  file_id?: string;
  /** Where the audio can be downloaded (VK `link_ogg`, else `link_mp3`). */
  url?: string;
  /** Length, seconds, as the channel reported it (Bot API `duration`, VK `duration`). */
  duration_s: number;
  /** MIME type as the channel reported it (Bot API `mime_type`; `video_note` is `video/mp4`). */
  mime?: string;
  /** Size in bytes as the channel reported it (Bot API `file_size`), when it did. */
  size?: number;
  /** The text of the voice, once known: the channel's own (VK `transcript`) or ours. */
  transcript?: string;
  /**
   * Who made `transcript`: `channel` (VK gave it; free, no API call) or `model` (we did, through
   * `/v1/audio/transcriptions`; charged `llm.transcription.cost_per_minute`).
   */
  transcribed_by?: "channel" | "model";
}

/** Bytes of a voice message downloaded for transcription. */
export interface AudioBytes {
  bytes: Buffer;
  /** The MIME type the channel reported, else the downloaded file's extension's (`audio/ogg`...). */
  mime: string;
  /** A file name whose extension tells the model API the format (`voice.ogg`, `note.mp4`). */
  filename: string;
}

/**
 * Resolves a {@link VoiceRef} to bytes through the bot's channel (Telegram `getFile` and the file
 * endpoint of `tg.api_root`; VK's URL). Built from the bot's config alone
 * (src/channels/files.ts), so the pipeline, `bots replay` and `bots prompt test` can use it.
 */
export interface AudioFetcher {
  /**
   * Downloads one voice message, at most `maxBytes`.
   * @throws ChannelError `AUDIO_TOO_LARGE`, `AUDIO_DOWNLOAD` (HTTP error or network, after
   *   retries), `AUDIO_UNSUPPORTED` (no way to fetch this reference on this bot); an AbortError
   *   when `signal` aborts
   */
  fetch(ref: VoiceRef, maxBytes: number, signal?: AbortSignal): Promise<AudioBytes>;
}

/** The model API takes at most 25 MB of audio per request (OpenAI `/v1/audio/transcriptions`). */
export const MAX_AUDIO_BYTES = 25 * 1024 ** 2;

/**
 * What transcribing `voice` adds to the answer's cost, integer hundredths of a credit:
 * `llm.transcription.cost_per_minute` × duration in minutes, by the second, rounded to the
 * hundredth. Zero when there is no voice or the channel gave its transcript (`transcribed_by:
 * channel`).
 */
export function voiceCost(bot: BotConfig, voice: VoiceRef | undefined): number {
  if (!voice || voice.transcribed_by === "channel") return 0;
  return Math.round((Math.round(bot.llm.transcription.cost_per_minute * 100) * voice.duration_s) / 60);
}

/** The voice reference stored in a message's meta, or undefined when there is none (or it is malformed). */
export function storedVoice(value: unknown): VoiceRef | undefined {
  if (!value || typeof value !== "object") return undefined;
  const v = value as VoiceRef;
  if (typeof v.duration_s !== "number" || (typeof v.file_id !== "string" && typeof v.url !== "string" && typeof v.transcript !== "string")) return undefined;
  return v;
}

/** The file extension the model API reads the format from, by MIME type (`ogg` when unknown). */
export function audioExtension(mime: string | undefined): string {
  const m = (mime ?? "").toLowerCase().split(";")[0]!.trim();
  const known: Record<string, string> = {
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mp4": "m4a",
    "audio/x-m4a": "m4a",
    "audio/m4a": "m4a",
    "audio/aac": "m4a",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/webm": "webm",
    "audio/flac": "flac",
    "video/mp4": "mp4",
    "video/webm": "webm",
  };
  return known[m] ?? "ogg";
}

/** The MIME type of an audio file name's extension (`audio/ogg` when unknown). */
export function audioMimeOf(filename: string): string {
  const ext = filename.toLowerCase().split(".").pop() ?? "";
  const known: Record<string, string> = {
    ogg: "audio/ogg",
    oga: "audio/ogg",
    opus: "audio/ogg",
    mp3: "audio/mpeg",
    m4a: "audio/mp4",
    mp4: "video/mp4",
    wav: "audio/wav",
    webm: "audio/webm",
    flac: "audio/flac",
  };
  return known[ext] ?? "audio/ogg";
}

/** The refusal of a voice message above `max` bytes (what the model API takes). */
export function audioTooLarge(label: string, size: number, max: number, atLeast = false): ChannelError {
  return new ChannelError(
    "AUDIO_TOO_LARGE",
    `${label}: ${atLeast ? "more than " : ""}${formatBytes(size)} is over the ${formatBytes(max)} a transcription takes`,
  );
}
