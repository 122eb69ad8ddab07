import { toFile } from "openai";
import { withRetries, type RetryOptions } from "../lib/retry.js";
import type { BotConfig } from "../config/schema.js";
import { DEFAULT_BASE_URL, sharedSdk, toLlmError, type LlmOptions } from "./client.js";

/** Settings of one bot's transcription (its `llm:` section and `llm.transcription`). */
export interface TranscriberOptions {
  apiKey: string;
  /** OpenAI-compatible endpoint (the one of `llm.base_url`); undefined = the SDK default. */
  baseURL?: string;
  /** `llm.transcription.model`, e.g. `whisper-1`. */
  model: string;
  /** ISO-639-1 language hint (`llm.transcription.language`). */
  language: string;
  /** Per request, ms. */
  timeoutMs: number;
  /** Retries on 429/5xx/network errors (never on 400/401/403), as for the model (`llm.max_retries`). */
  maxRetries: number;
  /** Back-off tuning (tests shorten it). */
  retry?: Pick<RetryOptions, "baseMs" | "maxMs">;
  onRetry?: RetryOptions["onRetry"];
}

/** One voice message's text. */
export interface Transcript {
  text: string;
  /** Wall time of the call including retries, ms. */
  latencyMs: number;
}

/**
 * Speech to text through the OpenAI-compatible `POST /v1/audio/transcriptions` (openai SDK
 * `audio.transcriptions.create`, multipart: `file`, `model`, `language`), with the retry policy
 * of the model calls (src/lib/retry.ts; the SDK's own retries are off). The audio goes up as
 * bytes: a channel's file URL (Telegram's holds the bot token) never reaches the model API.
 */
export class Transcriber {
  constructor(readonly options: TranscriberOptions) {}

  /**
   * Transcribes one audio file.
   * @param filename its extension tells the API the format (`voice.ogg`, `note.mp4`)
   * @throws LlmError `LLM_UNAVAILABLE` after retries (429, 5xx, network, timeout), `LLM_REJECTED`
   *   on other 4xx; an AbortError when `signal` aborts
   * @returns the text, trimmed; empty when the audio holds no speech
   */
  async transcribe(audio: { bytes: Buffer; mime: string; filename: string }, signal?: AbortSignal): Promise<Transcript> {
    const o = this.options;
    const base = o.baseURL ?? DEFAULT_BASE_URL;
    const client = await sharedSdk(o.apiKey, o.baseURL, o.timeoutMs);
    const started = performance.now();
    const res = await withRetries(
      async () => {
        try {
          // A new upload each attempt: the SDK consumes the file's stream.
          const file = await toFile(audio.bytes, audio.filename, { type: audio.mime });
          return await client.audio.transcriptions.create({ file, model: o.model, language: o.language, response_format: "json" }, { signal });
        } catch (error) {
          throw toLlmError(error, base);
        }
      },
      { retries: o.maxRetries, baseMs: o.retry?.baseMs ?? 1000, maxMs: o.retry?.maxMs ?? 30_000, onRetry: o.onRetry, signal },
    );
    const text = (typeof res === "string" ? res : (res.text ?? "")).trim();
    return { text, latencyMs: Math.round(performance.now() - started) };
  }
}

/**
 * The transcriber of a bot: the endpoint, key, timeout and retry policy of its model client
 * (`options`, as `llmFor` in src/runner.ts built them), the model and language of
 * `llm.transcription`.
 */
export function transcriberFor(bot: BotConfig, options: LlmOptions): Transcriber {
  const t = bot.llm.transcription;
  return new Transcriber({
    apiKey: options.apiKey,
    baseURL: options.baseURL,
    timeoutMs: options.timeoutMs,
    maxRetries: options.maxRetries,
    retry: options.retry,
    onRetry: options.onRetry,
    model: t.model,
    language: t.language,
  });
}
