import type { BotConfig } from "../../config/schema.js";
import type { Middleware } from "../../lib/compose.js";
import type { LlmClient } from "../../llm/client.js";
import { transcriberFor, type Transcriber } from "../../llm/transcribe.js";
import type { Store } from "../../storage/index.js";
import type { OwnerFence } from "../../storage/owners.js";
import type { IncomingStatus } from "../../storage/schema.js";
import { describeError, FencedError } from "../../errors.js";
import type { IncomingMessage, PipelineContext } from "../types.js";
import { MAX_AUDIO_BYTES, type AudioFetcher } from "../voice.js";

/** Options of {@link transcribeStage}. */
export interface TranscribeStageDeps {
  bot: BotConfig;
  store: Pick<Store, "messages" | "owners">;
  /** The bot's model client: the transcription uses its endpoint, key, timeout and retry policy. */
  llm: Pick<LlmClient, "options">;
  /** Downloads the audio (src/channels/files.ts `audioFetcherFor`); without it a voice message fails. */
  audio?: AudioFetcher;
  fence?: OwnerFence;
  /** The pipeline's stop: aborts a download or transcription in flight (the message stays `received`). */
  signal: AbortSignal;
  /** Replaces the transcriber built from `llm` and `llm.transcription` (tests). */
  transcriber?: Pick<Transcriber, "transcribe">;
}

/** Statuses a voice message is skipped or failed from: those an answer may start from. */
const OPEN: IncomingStatus[] = ["received", "failed", "no_balance", "expired"];

/**
 * The pipeline stage that turns a voice message (`IncomingMessage.voice`, docs/voice.md) into
 * text before the feature gates and the balance see it. A message without voice, or whose voice
 * has its transcript already (the channel's own, VK `transcript`, or ours stored by an earlier
 * attempt: recovery and replay never transcribe again), passes straight through. Otherwise:
 * - `llm.transcription.enabled` false: `no_voice_reply` is sent free and the message is
 *   `skipped` (nothing sent when it is null);
 * - longer than `max_seconds` (the channel's `duration`) or bigger than the model API takes:
 *   `too_long_reply` free, `skipped`;
 * - else the audio is downloaded by us and uploaded to `/v1/audio/transcriptions` (retried like
 *   the model). The transcript is stored with the row right away (`messages.setTranscript`:
 *   the caption, if any, then the transcript becomes its `text`; the meta's `voice.transcript`)
 *   and the message goes on as text; the balance stage then reserves `cost_per_reply` plus
 *   `voiceCost`. A download or transcription that fails after its retries records the message
 *   `failed` (nothing was reserved), so `bots replay --send` answers it later, as after a model
 *   outage; a transcript without speech records it `skipped`. A stop meanwhile leaves it
 *   `received` for the next start.
 */
export function transcribeStage(deps: TranscribeStageDeps): Middleware<PipelineContext> {
  const t = deps.bot.llm.transcription;
  const transcriber = deps.transcriber ?? transcriberFor(deps.bot, deps.llm.options);
  // A transcript made by an attempt whose write of it failed (the database away): the next
  // attempt of the same message (answerThroughOutages reuses the message) writes it without a call.
  const unstored = new WeakMap<IncomingMessage, string>();

  async function skip(ctx: PipelineContext, reason: string, reply: string | null): Promise<void> {
    ctx.outcome = "skipped";
    const changed = await deps.store.messages.setStatus(ctx.id!, "skipped", { error: reason, from: OPEN, fence: deps.fence });
    ctx.log.info({ reason, reply: reply !== null }, "voice message not answered by the model");
    if (changed && reply && (!ctx.stored || ctx.state.resumed)) await ctx.sendFreeReply?.(reply);
  }

  return async function transcribe(ctx, next) {
    const msg = ctx.msg;
    const voice = msg.voice;
    if (!voice || voice.transcript !== undefined) return next();
    if (!t.enabled) return skip(ctx, "voice message; llm.transcription.enabled is false", t.no_voice_reply);
    if (voice.duration_s > t.max_seconds)
      return skip(ctx, `voice message of ${voice.duration_s} s is over llm.transcription.max_seconds (${t.max_seconds})`, t.too_long_reply);
    let text = unstored.get(msg);
    if (text === undefined) {
      try {
        if (!deps.audio) throw new Error("no audio fetcher for this bot");
        const audio = await deps.audio.fetch(voice, MAX_AUDIO_BYTES, deps.signal);
        const started = performance.now();
        text = (await transcriber.transcribe(audio, deps.signal)).text;
        ctx.log.info(
          { duration_s: voice.duration_s, bytes: audio.bytes.length, chars: text.length, latency_ms: Math.round(performance.now() - started) },
          "voice message transcribed",
        );
      } catch (error) {
        if (deps.signal.aborted) {
          ctx.outcome = "interrupted";
          ctx.log.info("transcription interrupted by the stop; the message stays received for the next start");
          return;
        }
        if ((error as { code?: string }).code === "AUDIO_TOO_LARGE") return skip(ctx, describeError(error).slice(0, 2000), t.too_long_reply);
        const reason = `transcription: ${describeError(error)}`;
        ctx.outcome = "failed";
        ctx.error = error;
        ctx.log.warn({ err: error, reason }, "voice message could not be transcribed; kept for replay (nothing reserved)");
        await deps.store.messages.setStatus(ctx.id!, "failed", { error: reason.slice(0, 2000), from: OPEN, fence: deps.fence });
        return;
      }
    }
    if (!text) return skip(ctx, "voice message without speech (empty transcript)", null);
    unstored.set(msg, text);
    const row = await deps.store.messages.get(ctx.id!);
    const meta = row?.meta ? (JSON.parse(row.meta) as Record<string, unknown>) : {};
    const transcribed = { ...voice, transcript: text, transcribed_by: "model" as const };
    const full = [msg.text.trim(), text].filter(Boolean).join("\n");
    if (!(await deps.store.messages.setTranscript(ctx.id!, full, { ...meta, voice: transcribed }, deps.fence))) {
      const f = deps.fence;
      if (f && !(await deps.store.owners.holds(f.bot, f.owner, f.epoch))) throw new FencedError(f.bot, f.epoch);
      ctx.outcome = "skipped";
      ctx.log.warn("the message was answered or changed elsewhere meanwhile; transcript not stored, not answered here");
      return;
    }
    unstored.delete(msg);
    msg.voice = transcribed;
    msg.text = full;
    await next();
  };
}
