import { downloadImage, tooLarge, type ImageBytes, type ImageRef } from "../../core/images.js";
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
 * Downloads pictures a Telegram user sent, on our side: Bot API `getFile` (`file_id` →
 * `file_path`, `file_size`), then `GET {api_root}/file/bot<token>/<file_path>`. The bot token is
 * part of both URLs, so neither ever leaves this module: errors name the `file_id` only, and the
 * model gets the bytes (base64), never a link. `getFile` serves files up to 20 MB.
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
   * The bytes of a `file_id`, at most `maxBytes`.
   * @throws ChannelError `IMAGE_TOO_LARGE` (by `file_size`, Telegram's "file is too big", or
   *   while reading), `IMAGE_DOWNLOAD` (getFile refused, HTTP or network error after retries),
   *   `IMAGE_NOT_IMAGE`
   */
  async fetch(ref: ImageRef & { file_id: string }, maxBytes: number, signal?: AbortSignal): Promise<ImageBytes> {
    const label = `file_id ${ref.file_id}`;
    const file = await withRetries(() => this.getFile(ref.file_id, label, signal), { retries: 2, baseMs: this.options.backoffMs ?? 500, maxMs: 5000, signal });
    if (file.file_size !== undefined && file.file_size > maxBytes) throw tooLarge(label, file.file_size, maxBytes);
    if (!file.file_path) throw new ChannelError("IMAGE_DOWNLOAD", `${label}: getFile gave no file_path`);
    const path = file.file_path.split("/").map(encodeURIComponent).join("/");
    return downloadImage(`${this.root}/file/bot${this.token}/${path}`, {
      maxBytes,
      signal,
      label,
      timeoutMs: this.options.timeoutMs,
      backoffMs: this.options.backoffMs,
    });
  }

  /** Bot API `getFile` → `File` (`file_id`, `file_unique_id`, `file_size?`, `file_path?`). */
  private async getFile(fileId: string, label: string, signal?: AbortSignal): Promise<{ file_size?: number; file_path?: string }> {
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
      throw new ChannelError("IMAGE_DOWNLOAD", `${label}: getFile failed (${(error as Error).name === "TimeoutError" ? "timeout" : "network error"})`);
    }
    let body: { ok?: boolean; result?: { file_size?: number; file_path?: string }; error_code?: number; description?: string };
    try {
      body = (await res.json()) as typeof body;
    } catch {
      throw new ChannelError("IMAGE_DOWNLOAD", `${label}: getFile answered HTTP ${res.status} without JSON`, { status: res.status });
    }
    if (body.ok && body.result) return body.result;
    const description = body.description ?? `HTTP ${res.status}`;
    // Bot API refuses files above 20 MB with "Bad Request: file is too big".
    if (/too big/i.test(description)) throw new ChannelError("IMAGE_TOO_LARGE", `${label}: getFile: ${description}`);
    throw new ChannelError("IMAGE_DOWNLOAD", `${label}: getFile: ${description}`, { status: body.error_code ?? res.status });
  }
}
