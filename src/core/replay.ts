import type { BotConfig } from "../config/schema.js";
import { describeError } from "../errors.js";
import type { LlmClient, ToolCallRecord, ToolDefinition } from "../llm/client.js";
import type { Store } from "../storage/index.js";
import type { MessageRow } from "../storage/messages.js";
import type { IncomingStatus } from "../storage/schema.js";
import { pino, type Logger } from "pino";
import { mergeAlbum, readAlbum } from "./albums.js";
import { completeWithImages, loadImages, type ImageFetcher } from "./images.js";
import { buildPrompt, messageFromRow, type Feature, type Pipeline } from "./pipeline.js";
import type { PipelineContext } from "./types.js";

/** Statuses `--send` answers without `--force`: never answered, or partly (the missing parts). */
export const UNANSWERED: IncomingStatus[] = ["received", "failed", "no_balance", "expired", "partial"];
/** Statuses that may be re-sent with `--force` (an answer went out, or may have). */
export const ANSWERED: IncomingStatus[] = ["answered", "delivering", "skipped", "unconfirmed"];

/** Which stored incoming messages to replay. */
export interface ReplaySelection {
  /** Bot names; the caller resolves them from the configs. */
  bots: string[];
  ids?: number[];
  /** @defaultValue every status but `filtered` for a dry run; {@link UNANSWERED} for send */
  statuses?: IncomingStatus[];
  /** Epoch ms UTC, inclusive. */
  sinceMs?: number;
  /** Epoch ms UTC, exclusive. */
  untilMs?: number;
  limit?: number;
}

/** What replay talks to; the CLI builds the real ones, tests local ones. */
export interface ReplayDeps {
  bots: BotConfig[];
  store: Store;
  /** The bot's model client (dry run); called once per bot. */
  llmFor(bot: BotConfig): LlmClient;
  /** Features of a bot, for the tools offered to the model in a dry run (not executed); once per bot. */
  featuresFor?(bot: BotConfig): Feature[];
  /**
   * The bot's pipeline with its channel as sender (only for `send`). Called once per bot, on
   * the first message of that bot.
   */
  pipelineFor?(bot: BotConfig): Promise<Pipeline>;
  /** Fetches a bot's pictures for a dry run (`llm.vision`); without it pictures are placeholders. */
  imagesFor?(bot: BotConfig): ImageFetcher;
  /** A bot's logger (dry-run picture problems). @defaultValue silent */
  loggerFor?(bot: BotConfig): Logger;
  /** Clock, epoch ms UTC. @defaultValue Date.now */
  now?: () => number;
  /** Aborting stops after the message in progress (Ctrl-C). */
  signal?: AbortSignal;
  /** Called after each message, in order. */
  onResult?(result: ReplayResult, done: number, total: number): void;
}

/** Options of {@link replay}. */
export interface ReplayOptions {
  /** Deliver, record and charge answers to never-answered messages. @defaultValue false (dry run) */
  send?: boolean;
  /** With `send`: also re-send messages answered before. */
  force?: boolean;
}

/** The outcome for one message. */
export interface ReplayResult {
  id: number;
  bot: string;
  thread_key: string;
  /** Status before the replay. */
  status: IncomingStatus;
  /** Received, epoch ms UTC. */
  created_ms: number;
  text: string;
  /** The answer stored before, if any. */
  stored_answer: string | null;
  /** The new answer, or null when none was produced. */
  new_answer: string | null;
  /** True when a new answer differs from the stored one (or there was none). */
  changed: boolean;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  latency_ms: number | null;
  tool_calls: ToolCallRecord[];
  /**
   * `dry_run` (nothing written), `answered` (sent, recorded, charged), `no_balance`, `failed`,
   * `skipped` (answered elsewhere meanwhile, or answered before and no `--force`), `error` (the
   * model failed in a dry run).
   */
  outcome: "dry_run" | "answered" | "no_balance" | "failed" | "skipped" | "error";
  /** Why it failed or was skipped. */
  error: string | null;
}

/** Totals of a replay run. */
export interface ReplaySummary {
  selected: number;
  processed: number;
  /** Dry run: new answers that differ from the stored ones. */
  changed: number;
  answered: number;
  failed: number;
  skipped: number;
  /** True when Ctrl-C stopped the run early. */
  interrupted: boolean;
  results: ReplayResult[];
}

/**
 * Re-runs stored incoming messages through the bot's current prompt and model, each with the
 * history its thread had before it (docs/operator-tools.md).
 *
 * Dry run (default): one model call per message; nothing is written, sent or charged. With
 * `send`, never-answered messages ({@link UNANSWERED}) go through {@link Pipeline.answerStored}
 * (balance, model, delivery, settle as usual; claimed through the status so nothing is answered
 * twice); answered ones only with `force`. Messages run one at a time in id order, which keeps
 * each thread's original order. An aborted `signal` stops after the current message.
 * @throws StorageError when the selection cannot be read; per-message failures are results
 */
export async function replay(deps: ReplayDeps, sel: ReplaySelection, opts: ReplayOptions = {}): Promise<ReplaySummary> {
  const now = deps.now ?? Date.now;
  const statuses = sel.statuses ?? (opts.send ? (opts.force ? [...UNANSWERED, ...ANSWERED] : UNANSWERED) : [...UNANSWERED, ...ANSWERED]);
  const rows = await deps.store.messages.selectIncoming({
    bots: sel.bots,
    ids: sel.ids,
    statuses,
    sinceMs: sel.sinceMs,
    untilMs: sel.untilMs,
    limit: sel.limit,
  });
  const byName = new Map(deps.bots.map((b) => [b.name, b]));
  const pipelines = new Map<string, Promise<Pipeline>>();
  const dryDeps = new Map<string, { llm: LlmClient; tools: ToolDefinition<PipelineContext>[] }>();
  const summary: ReplaySummary = { selected: rows.length, processed: 0, changed: 0, answered: 0, failed: 0, skipped: 0, interrupted: false, results: [] };
  for (const row of rows) {
    if (deps.signal?.aborted) {
      summary.interrupted = true;
      break;
    }
    const bot = byName.get(row.bot)!;
    const stored = await deps.store.messages.answerTo(row.id);
    const base = {
      id: row.id,
      bot: row.bot,
      thread_key: row.thread_key,
      status: row.status as IncomingStatus,
      created_ms: row.created_ms,
      text: row.text,
      stored_answer: stored?.text ?? null,
    };
    let result: ReplayResult;
    if (!opts.send) {
      let d = dryDeps.get(bot.name);
      if (!d) dryDeps.set(bot.name, (d = { llm: deps.llmFor(bot), tools: (deps.featuresFor?.(bot) ?? []).flatMap((f) => f.tools ?? []) }));
      result = await dryRun(deps, d, bot, row, base, now());
    } else if (ANSWERED.includes(row.status as IncomingStatus) && !opts.force) {
      result = {
        ...base,
        new_answer: null,
        changed: false,
        prompt_tokens: null,
        completion_tokens: null,
        latency_ms: null,
        tool_calls: [],
        outcome: "skipped",
        error: "answered before; use --force to send again",
      };
    } else {
      if (!deps.pipelineFor) throw new Error("replay --send needs pipelineFor");
      let p = pipelines.get(bot.name);
      if (!p) pipelines.set(bot.name, (p = deps.pipelineFor(bot)));
      const ctx = await (await p).answerStored(row, { force: opts.force });
      result = fromContext(base, ctx);
      if (result.outcome === "failed") result.error = (await deps.store.messages.get(row.id))?.error ?? "failed";
    }
    summary.processed++;
    if (result.changed) summary.changed++;
    if (result.outcome === "answered") summary.answered++;
    if (result.outcome === "failed" || result.outcome === "error" || result.outcome === "no_balance") summary.failed++;
    if (result.outcome === "skipped") summary.skipped++;
    summary.results.push(result);
    deps.onResult?.(result, summary.processed, rows.length);
  }
  return summary;
}

type ResultBase = Pick<ReplayResult, "id" | "bot" | "thread_key" | "status" | "created_ms" | "text" | "stored_answer">;

async function dryRun(
  deps: ReplayDeps,
  d: { llm: LlmClient; tools: ToolDefinition<PipelineContext>[] },
  bot: BotConfig,
  row: MessageRow,
  base: ResultBase,
  nowMs: number,
): Promise<ReplayResult> {
  const msg = messageFromRow(row);
  try {
    // A dry run never transcribes (that costs): the stored transcript is the text, or there is none yet.
    if (msg.voice && msg.voice.transcript === undefined) throw new Error("voice message not transcribed yet; bots replay --send transcribes and answers it");
    if (msg.group) {
      // An album answers with every part's pictures and text (core/albums.ts).
      const album = await readAlbum(deps.store, msg);
      if (album.head?.id === row.id) Object.assign(msg, mergeAlbum(album.parts));
    }
    // The prompt is rendered at the message's own time, so {{now}} and {{date}} read as they did then.
    const prompt = await buildPrompt(bot, deps.store, msg, row.id, row.created_ms || nowMs);
    const log = (deps.loggerFor?.(bot) ?? pino({ enabled: false })).child({ msg_id: row.id });
    const images = await loadImages(bot, msg.images, deps.imagesFor?.(bot), log);
    const c = await completeWithImages<PipelineContext>(d.llm, bot, prompt, images, { tools: d.tools, executeTools: false }, log);
    return {
      ...base,
      new_answer: c.text,
      changed: c.text !== base.stored_answer,
      prompt_tokens: c.usage.prompt_tokens,
      completion_tokens: c.usage.completion_tokens,
      latency_ms: c.latencyMs,
      tool_calls: c.toolCalls,
      outcome: "dry_run",
      error: null,
    };
  } catch (error) {
    return {
      ...base,
      new_answer: null,
      changed: false,
      prompt_tokens: null,
      completion_tokens: null,
      latency_ms: null,
      tool_calls: [],
      outcome: "error",
      error: describeError(error),
    };
  }
}

function fromContext(base: ResultBase, ctx: PipelineContext): ReplayResult {
  const c = ctx.completion;
  const notDelivered = ctx.outcome === "failed" || ctx.outcome === "unconfirmed" || ctx.outcome === "partial";
  const outcome = ctx.outcome === "answered" || ctx.outcome === "no_balance" || ctx.outcome === "skipped" ? ctx.outcome : notDelivered ? "failed" : "skipped";
  let error: string | null = null;
  if (outcome === "skipped") error = ctx.outcome === "skipped" ? "answered elsewhere meanwhile" : `stopped by a gate (${ctx.outcome ?? "no outcome"})`;
  if (outcome === "no_balance") error = `account ${ctx.bot.balance.account} cannot pay a reply`;
  return {
    ...base,
    new_answer: outcome === "answered" ? (c?.text ?? null) : null,
    changed: outcome === "answered" && c?.text !== base.stored_answer,
    prompt_tokens: c?.usage.prompt_tokens ?? null,
    completion_tokens: c?.usage.completion_tokens ?? null,
    latency_ms: c?.latencyMs ?? null,
    tool_calls: c?.toolCalls ?? [],
    outcome,
    error,
  };
}
