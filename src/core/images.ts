import type { Logger } from "pino";
import type { BotConfig } from "../config/schema.js";
import { ChannelError, LlmError } from "../errors.js";
import type { ChatMessage, Completion, LlmClient, ToolDefinition } from "../llm/client.js";
import { formatBytes } from "../lib/bytes.js";
import { withRetries } from "../lib/retry.js";

/**
 * A picture sent with a message, as the channel described it; stored in the message's meta
 * (`images`), so a replay or a recovery fetches the same picture again. Channel-agnostic: a
 * Telegram picture is named by its Bot API `file_id` (resolved with `getFile`), a VK picture by
 * the URL of its largest size on VK's CDN.
 */
export type ImageRef = ({ file_id: string; url?: never } | { url: string; file_id?: never }) & {
  /** Size in bytes as the channel reported it (Bot API `file_size`), when it did. */
  size?: number;
  /** MIME type as the channel reported it (Bot API `Document.mime_type`), when it did. */
  mime?: string;
  /** Pixels, when reported (Bot API `PhotoSize`, VK `photo.sizes[]`). */
  width?: number;
  height?: number;
};

/** Bytes of a picture downloaded for the model. */
export interface ImageBytes {
  bytes: Buffer;
  /** The MIME type read from the bytes themselves ({@link sniffImageMime}), never a header. */
  mime: ImageMime;
}

/**
 * Resolves {@link ImageRef}s to bytes through the bot's channel (Telegram `getFile` and the file
 * endpoint of `tg.api_root`; VK's CDN URL). Built from the bot's config alone, so the pipeline,
 * `bots replay` and features (coaching) can all use it.
 */
export interface ImageFetcher {
  /**
   * Downloads one picture, refusing anything larger than `maxBytes` before or while reading it.
   * @throws ChannelError `IMAGE_TOO_LARGE`, `IMAGE_NOT_IMAGE` (bytes are not JPEG/PNG/WebP/GIF),
   *   `IMAGE_DOWNLOAD` (HTTP error or network, after retries), `IMAGE_UNSUPPORTED` (no way to
   *   fetch this kind of reference on this bot); an AbortError when `signal` aborts
   */
  fetch(ref: ImageRef, maxBytes: number, signal?: AbortSignal): Promise<ImageBytes>;
}

/** Image types OpenAI-compatible vision models take. */
export type ImageMime = "image/jpeg" | "image/png" | "image/webp" | "image/gif";

/** MIME types accepted for pictures sent as files (Telegram documents). */
export const IMAGE_MIMES: readonly string[] = ["image/jpeg", "image/png", "image/webp", "image/gif"];

/**
 * The image type of some bytes, from their magic numbers (JPEG `FF D8 FF`, PNG `89 50 4E 47`,
 * WebP `RIFF....WEBP`, GIF `GIF87a`/`GIF89a`), or null for anything else.
 */
export function sniffImageMime(b: Uint8Array): ImageMime | null {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "image/jpeg";
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47 && b[4] === 0x0d && b[5] === 0x0a && b[6] === 0x1a && b[7] === 0x0a)
    return "image/png";
  const ascii = (from: number, to: number) => Buffer.from(b.subarray(from, to)).toString("latin1");
  if (b.length >= 12 && ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "image/webp";
  if (b.length >= 6 && (ascii(0, 6) === "GIF87a" || ascii(0, 6) === "GIF89a")) return "image/gif";
  return null;
}

/** Options of {@link downloadImage}. */
export interface DownloadOptions {
  maxBytes: number;
  signal?: AbortSignal;
  /** Per attempt, ms. @defaultValue 30000 */
  timeoutMs?: number;
  /** Retries on 5xx, 429 and network errors. @defaultValue 2 */
  retries?: number;
  /** First back-off, ms. @defaultValue 500 */
  backoffMs?: number;
  /** What to call the file in errors and logs instead of its URL (which may hold a token). */
  label: string;
}

/**
 * GETs a picture over HTTP(S), refusing it by `Content-Length` or, when that is missing or
 * wrong, as soon as more than `maxBytes` arrived; checks the bytes are an image.
 * Error messages never contain the URL (a Telegram file URL contains the bot token).
 * @throws ChannelError `IMAGE_TOO_LARGE`, `IMAGE_NOT_IMAGE`, `IMAGE_DOWNLOAD` (after retries)
 */
export async function downloadImage(url: string, o: DownloadOptions): Promise<ImageBytes> {
  const bytes = await downloadBytes(url, { ...o, code: "IMAGE", tooLarge: (size, atLeast) => tooLarge(o.label, size, o.maxBytes, atLeast) });
  const mime = sniffImageMime(bytes);
  if (!mime) throw new ChannelError("IMAGE_NOT_IMAGE", `${o.label}: the file is not a JPEG, PNG, WebP or GIF picture`);
  return { bytes, mime };
}

/**
 * GETs a file over HTTP(S) (a picture, a voice message), refusing it by `Content-Length` or, when
 * that is missing or wrong, as soon as more than `maxBytes` arrived. Retries 5xx, 429 and network
 * errors. Error messages never contain the URL (a Telegram file URL contains the bot token).
 * @throws ChannelError `<code>_DOWNLOAD` (after retries), `<code>_UNSUPPORTED` (not http(s)),
 *   what `tooLarge` returns; an AbortError when `signal` aborts
 */
export async function downloadBytes(
  url: string,
  o: DownloadOptions & { code: "IMAGE" | "AUDIO"; tooLarge: (size: number, atLeast: boolean) => ChannelError },
): Promise<Buffer> {
  if (!/^https?:\/\//i.test(url)) throw new ChannelError(`${o.code}_UNSUPPORTED`, `${o.label}: only http(s) URLs are fetched`);
  return withRetries(
    async () => {
      const signal = o.signal ? AbortSignal.any([o.signal, AbortSignal.timeout(o.timeoutMs ?? 30_000)]) : AbortSignal.timeout(o.timeoutMs ?? 30_000);
      let res: Response;
      try {
        res = await fetch(url, { signal, redirect: "follow" });
      } catch (error) {
        if (o.signal?.aborted) throw error;
        throw new ChannelError(`${o.code}_DOWNLOAD`, `${o.label}: download failed (${(error as Error).name === "TimeoutError" ? "timeout" : "network error"})`);
      }
      if (!res.ok) {
        await res.body?.cancel().catch(() => undefined);
        throw new ChannelError(`${o.code}_DOWNLOAD`, `${o.label}: download answered HTTP ${res.status}`, { status: res.status });
      }
      const declared = Number(res.headers.get("content-length") ?? NaN);
      if (Number.isFinite(declared) && declared > o.maxBytes) {
        await res.body?.cancel().catch(() => undefined);
        throw o.tooLarge(declared, false);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body ?? []) {
        size += (chunk as Uint8Array).length;
        if (size > o.maxBytes) {
          await res.body?.cancel().catch(() => undefined);
          throw o.tooLarge(size, true);
        }
        chunks.push(Buffer.from(chunk as Uint8Array));
      }
      return Buffer.concat(chunks);
    },
    { retries: o.retries ?? 2, baseMs: o.backoffMs ?? 500, maxMs: 5000, signal: o.signal },
  );
}

/** The refusal of a picture above `llm.vision.max_bytes`. */
export function tooLarge(label: string, size: number, max: number, atLeast = false): ChannelError {
  return new ChannelError("IMAGE_TOO_LARGE", `${label}: ${atLeast ? "more than " : ""}${formatBytes(size)} is over llm.vision.max_bytes (${formatBytes(max)})`);
}

/**
 * The image references stored in a message's meta, as {@link ImageRef}s. Older rows stored bare
 * Bot API `file_id` strings; they are read as `{file_id}`. Anything else is dropped.
 */
export function storedImages(value: unknown): ImageRef[] | undefined {
  if (!Array.isArray(value)) return undefined;
  const out: ImageRef[] = [];
  for (const v of value) {
    if (typeof v === "string" && v) out.push({ file_id: v });
    else if (v && typeof v === "object" && (typeof (v as ImageRef).file_id === "string" || typeof (v as ImageRef).url === "string")) out.push(v as ImageRef);
  }
  return out.length ? out : undefined;
}

/**
 * The placeholder a picture leaves in the text the model reads when the picture itself is not
 * sent (earlier turns of the history, vision off, a refused file): `[photo]`, `[3 photos]`.
 */
export function photoPlaceholder(n: number): string {
  return n === 1 ? "[photo]" : `[${n} photos]`;
}

/** Text with a placeholder for `n` pictures in front (just the placeholder when text is empty). */
export function withPlaceholder(text: string, n: number): string {
  if (n <= 0) return text;
  return text ? `${photoPlaceholder(n)} ${text}` : photoPlaceholder(n);
}

/** One picture as a Chat Completions content part. */
export type ImagePart = { type: "image_url"; image_url: { url: string; detail: "low" | "high" | "auto" } };

/** The pictures of one message, ready for the model. */
export interface LoadedImages {
  /** `image_url` parts with `data:` URLs (base64), in the message's order. */
  parts: ImagePart[];
  /** Pictures the message had that are not in `parts` (refused, failed, over `max_images`, vision off). */
  left: number;
  /** Why pictures were left out, one line each (`picture 2: …`), as logged; empty when none or vision is off. */
  problems?: string[];
}

/**
 * Downloads a message's pictures for the model, as `llm.vision` says: nothing when vision is off
 * or no fetcher is given, at most `max_images`, each at most `max_bytes` (a size the channel
 * reported above it is refused without downloading). Every picture left out is logged with the
 * reason; a failure never throws (the text is answered anyway), except an abort of `signal`.
 */
export async function loadImages(
  bot: BotConfig,
  refs: ImageRef[] | undefined,
  fetcher: ImageFetcher | undefined,
  log: Logger,
  signal?: AbortSignal,
): Promise<LoadedImages> {
  const all = refs ?? [];
  const vision = bot.llm.vision;
  if (!all.length) return { parts: [], left: 0 };
  if (!vision.enabled || !fetcher) return { parts: [], left: all.length };
  const chosen = all.slice(0, vision.max_images);
  const problems: string[] = [];
  if (all.length > chosen.length) {
    log.warn({ images: all.length, max_images: vision.max_images }, "more pictures than llm.vision.max_images; the rest are left out");
    problems.push(`${all.length} pictures, llm.vision.max_images is ${vision.max_images}: the rest are left out`);
  }
  const parts: ImagePart[] = [];
  for (const [i, ref] of chosen.entries()) {
    try {
      if (ref.size !== undefined && ref.size > vision.max_bytes) throw tooLarge(`picture ${i + 1}`, ref.size, vision.max_bytes);
      const img = await fetcher.fetch(ref, vision.max_bytes, signal);
      parts.push({ type: "image_url", image_url: { url: `data:${img.mime};base64,${img.bytes.toString("base64")}`, detail: vision.detail } });
      log.debug({ picture: i + 1, bytes: img.bytes.length, mime: img.mime }, "picture loaded for the model");
    } catch (error) {
      if (signal?.aborted) throw error;
      const code = (error as ChannelError).code ?? "IMAGE_DOWNLOAD";
      log.warn(
        { picture: i + 1, code, reason: (error as Error).message, ...(ref.file_id ? { file_id: ref.file_id } : {}) },
        "picture left out; the text is answered without it",
      );
      problems.push(`picture ${i + 1}: ${(error as Error).message}`);
    }
  }
  return { parts, left: all.length - parts.length, problems };
}

/**
 * The prompt with the pictures in the last (user) message: its content becomes a text part
 * (with a placeholder for pictures left out) followed by the `image_url` parts; without parts
 * it stays plain text. The prompt given is not changed.
 */
export function attachImages(prompt: ChatMessage[], images: LoadedImages): ChatMessage[] {
  const last = prompt[prompt.length - 1];
  if (last?.role !== "user" || typeof last.content !== "string") return prompt;
  if (!images.parts.length && !images.left) return prompt;
  const text = withPlaceholder(last.content, images.left);
  const content = images.parts.length ? [...(text ? [{ type: "text" as const, text }] : []), ...images.parts] : text;
  return [...prompt.slice(0, -1), { role: "user", content }];
}

/** True for a model's refusal of image input: HTTP 400 (or 422) whose message is about images. */
export function isImageRefusal(error: unknown): boolean {
  if (!(error instanceof LlmError) || (error.status !== 400 && error.status !== 422)) return false;
  // The message starts with the endpoint (`model API at URL HTTP 400: …`): a URL such as
  // https://vision.example.com/v1 is not the model speaking.
  return /image|vision|multi-?modal|modalit/i.test(error.message.replace(/^model API at \S+ /, ""));
}

/**
 * Asks the model with the pictures; when it refuses image input ({@link isImageRefusal}), logs
 * one line naming the bot and `llm.vision.enabled`, and asks once more without them (the text
 * with a placeholder for each picture).
 * @throws what {@link LlmClient.complete} throws
 */
export async function completeWithImages<C>(
  llm: LlmClient,
  bot: BotConfig,
  prompt: ChatMessage[],
  images: LoadedImages,
  opts: { tools?: ToolDefinition<C>[]; context?: C; executeTools?: boolean; signal?: AbortSignal; onDelta?: (textSoFar: string) => void },
  log: Logger,
): Promise<Completion> {
  const messages = attachImages(prompt, images);
  try {
    return await llm.complete(messages, opts);
  } catch (error) {
    if (!images.parts.length || !isImageRefusal(error)) throw error;
    log.warn(
      { err: error, model: bot.llm.model, images: images.parts.length },
      `bot ${bot.name}: model ${bot.llm.model} refused image input; answering without the pictures. Use a vision model or set llm.vision.enabled: false`,
    );
    return llm.complete(attachImages(prompt, { parts: [], left: images.parts.length + images.left }), opts);
  }
}
