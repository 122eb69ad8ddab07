import { downloadBytes, downloadImage, tooLarge, type ImageBytes, type ImageRef } from "../../core/images.js";
import { audioTooLarge } from "../../core/voice.js";
import { withRetries } from "../../lib/retry.js";
import { ChannelError } from "../../errors.js";

/** Tuning of {@link TelegramFiles} (tests shorten the waits). */
export interface TelegramFilesOptions {
  /** Per request, ms. @defaultValue 30000 */
  timeoutMs?: number;
  /** First back-off of retries, ms. @defaultValue 500 */
  backoffMs?: number;
}

/**
 * Downloads pictures and voice messages a Telegram user sent, on our side: Bot API `getFile` (`file_id` →
 * `file_path`, `file_size`), then `GET {api_root}/file/bot<token>/<file_path>`. The bot token is
 * part of both URLs, so neither ever leaves this module: errors name the `file_id` only, and the
 * model gets the bytes (base64, or a multipart upload), never a link. `getFile` serves files up to 20 MB.
 */
export class TelegramFiles {
  private readonly root: string;

  constructor(
    apiRoot: string,
    private readonly token: string,
    private readonly options: TelegramFilesOptions = {},
  ) {
    this.root = apiRoot.replace(/\/+$/, "");
  }

  /**
   * The bytes of a picture's `file_id`, at most `maxBytes`.
   * @throws ChannelError `IMAGE_TOO_LARGE` (by `file_size`, Telegram's "file is too big", or
   *   while reading), `IMAGE_DOWNLOAD` (getFile refused, HTTP or network error after retries),
   *   `IMAGE_NOT_IMAGE`
   */
  async fetch(ref: ImageRef & { file_id: string }, maxBytes: number, signal?: AbortSignal): Promise<ImageBytes> {
    const label = `file_id ${ref.file_id}`;
    const url = await this.fileUrl(ref.file_id, maxBytes, "IMAGE", signal, (size) => tooLarge(label, size, maxBytes));
    return downloadImage(url, { maxBytes, signal, label, timeoutMs: this.options.timeoutMs, backoffMs: this.options.backoffMs });
  }

  /**
   * The bytes of a voice message's `file_id` (Bot API `Voice`, `Audio`, `VideoNote`), at most
   * `maxBytes`, with the `file_path` getFile gave (its extension tells the audio format).
   * @throws ChannelError `AUDIO_TOO_LARGE` (by `file_size`, Telegram's "file is too big", or
   *   while reading), `AUDIO_DOWNLOAD` (getFile refused, HTTP or network error after retries)
   */
  async fetchAudio(fileId: string, maxBytes: number, signal?: AbortSignal): Promise<{ bytes: Buffer; filePath: string }> {
    const label = `file_id ${fileId}`;
    const big = (size: number, atLeast = false) => audioTooLarge(label, size, maxBytes, atLeast);
    const url = await this.fileUrl(fileId, maxBytes, "AUDIO", signal, big);
    const filePath = decodeURIComponent(url.slice(url.lastIndexOf("/") + 1));
    const bytes = await downloadBytes(url, {
      maxBytes,
      signal,
      label,
      timeoutMs: this.options.timeoutMs,
      backoffMs: this.options.backoffMs,
      code: "AUDIO",
      tooLarge: big,
    });
    return { bytes, filePath };
  }

  /**
   * `getFile` (retried), then the download URL `{api_root}/file/bot<token>/<file_path>` (it holds
   * the token: never logged, never returned outside this module's callers).
   */
  private async fileUrl(
    fileId: string,
    maxBytes: number,
    code: "IMAGE" | "AUDIO",
    signal: AbortSignal | undefined,
    big: (size: number) => ChannelError,
  ): Promise<string> {
    const label = `file_id ${fileId}`;
    const file = await withRetries(() => this.getFile(fileId, label, code, signal), { retries: 2, baseMs: this.options.backoffMs ?? 500, maxMs: 5000, signal });
    if (file.file_size !== undefined && file.file_size > maxBytes) throw big(file.file_size);
    if (!file.file_path) throw new ChannelError(`${code}_DOWNLOAD`, `${label}: getFile gave no file_path`);
    const path = file.file_path.split("/").map(encodeURIComponent).join("/");
    return `${this.root}/file/bot${this.token}/${path}`;
  }

  /** Bot API `getFile` → `File` (`file_id`, `file_unique_id`, `file_size?`, `file_path?`). */
  private async getFile(fileId: string, label: string, code: "IMAGE" | "AUDIO", signal?: AbortSignal): Promise<{ file_size?: number; file_path?: string }> {
    const timeout = AbortSignal.timeout(this.options.timeoutMs ?? 30_000);
    let res: Response;
    try {
      res = await fetch(`${this.root}/bot${this.token}/getFile`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ file_id: fileId }),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw new ChannelError(`${code}_DOWNLOAD`, `${label}: getFile failed (${(error as Error).name === "TimeoutError" ? "timeout" : "network error"})`);
    }
    let body: { ok?: boolean; result?: { file_size?: number; file_path?: string }; error_code?: number; description?: string };
    try {
      body = (await res.json()) as typeof body;
    } catch {
      throw new ChannelError(`${code}_DOWNLOAD`, `${label}: getFile answered HTTP ${res.status} without JSON`, { status: res.status });
    }
    if (body.ok && body.result) return body.result;
    const description = body.description ?? `HTTP ${res.status}`;
    // Bot API refuses files above 20 MB with "Bad Request: file is too big".
    if (/too big/i.test(description)) throw new ChannelError(`${code}_TOO_LARGE`, `${label}: getFile: ${description}`);
    throw new ChannelError(`${code}_DOWNLOAD`, `${label}: getFile: ${description}`, { status: body.error_code ?? res.status });
  }
}
