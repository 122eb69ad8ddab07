import type OpenAI from "openai";
import { LlmError } from "../errors.js";
import { parseRetryAfter, withRetries, type RetryOptions } from "../lib/retry.js";
import { modelFetch } from "./fetch.js";

/** A chat message as the Chat Completions API takes it. */
export type ChatMessage = OpenAI.Chat.Completions.ChatCompletionMessageParam;

/** A tool offered to the model (Chat Completions `tools[].function`). */
export interface ToolDefinition<C = unknown> {
  name: string;
  description: string;
  /** JSON Schema of the arguments object. */
  parameters: Record<string, unknown>;
  /**
   * Runs the call; the returned string goes back to the model as the tool result. Receives the
   * parsed arguments (the model's JSON) and the caller's context.
   */
  run(args: Record<string, unknown>, context: C): Promise<string>;
}

/** A tool call the model made. */
export interface ToolCallRecord {
  name: string;
  /** The arguments as the model sent them (JSON text). */
  arguments: string;
  /** What went back to the model, or null when tools were not executed. */
  result: string | null;
}

/** Token usage, in the API's own terms, summed over every round of a tool-call loop. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
}

/** The outcome of {@link LlmClient.complete}. */
export interface Completion {
  text: string;
  /** The model that answered, as the API reported it. */
  model: string;
  usage: Usage;
  /** Wall time of the whole call including retries and tool rounds, ms. */
  latencyMs: number;
  toolCalls: ToolCallRecord[];
}

/** Settings of one bot's model (from its `llm:` section). */
export interface LlmOptions {
  apiKey: string;
  /** OpenAI-compatible endpoint; undefined = the SDK default. */
  baseURL?: string;
  model: string;
  temperature: number;
  maxTokens: number;
  /** Per request, ms. */
  timeoutMs: number;
  /** Retries on 429/5xx/network errors (never on 400/401/403). */
  maxRetries: number;
  /** Back-off tuning (tests shorten it). */
  retry?: Pick<RetryOptions, "baseMs" | "maxMs">;
  /** Most rounds of tool calls before giving up. @defaultValue 5 */
  maxToolRounds?: number;
  onRetry?: RetryOptions["onRetry"];
}

/** SDK clients of this process by base URL, key and timeout (see {@link sharedSdk}). */
const sdks = new Map<string, Promise<OpenAI>>();

/**
 * One `openai` SDK client per (base URL, API key, timeout) in the process, imported on first
 * use. With 1,000 bots on one key the process builds one client (its dozens of resource
 * objects), not one per bot that answers (bench/many-bots). Its requests go through
 * {@link modelFetch}, which pools connections per origin. The SDK client holds no per-request
 * state, so sharing it is safe.
 */
export function sharedSdk(apiKey: string, baseURL: string | undefined, timeoutMs: number): Promise<OpenAI> {
  const key = JSON.stringify([baseURL ?? "", apiKey, timeoutMs]);
  let sdk = sdks.get(key);
  if (!sdk) {
    sdk = Promise.all([import("openai"), import("node-fetch")]).then(
      ([{ default: OpenAISdk }, { default: nodeFetch }]) => new OpenAISdk({ apiKey, baseURL, timeout: timeoutMs, maxRetries: 0, fetch: modelFetch(nodeFetch) }),
    );
    // A failed import is not cached: the next call tries again.
    sdk.catch(() => sdks.delete(key));
    sdks.set(key, sdk);
  }
  return sdk;
}

/**
 * A thin wrapper over the `openai` SDK's Chat Completions with our retry policy (the SDK's own
 * retries are off so that OpenAI, VK and 2GIS share one policy) and a tool-call loop.
 * The SDK is imported on first use so commands that never call a model stay fast.
 */
export class LlmClient {
  private sdk?: Promise<OpenAI>;
  constructor(readonly options: LlmOptions) {}

  /**
   * Starts loading the SDK and building its client now, without waiting (a failure is left to
   * the first call, which tries again): for a bot about to answer, so its first message does not
   * wait for the SDK's modules (a few hundred ms on a cold start).
   */
  warm(): void {
    this.client().catch(() => undefined);
  }

  private client(): Promise<OpenAI> {
    if (!this.sdk) {
      const sdk = sharedSdk(this.options.apiKey, this.options.baseURL, this.options.timeoutMs);
      this.sdk = sdk;
      // A failed load is not kept: the next call tries again (as sharedSdk does).
      sdk.catch(() => {
        if (this.sdk === sdk) this.sdk = undefined;
      });
    }
    return this.sdk;
  }

  /**
   * Asks the model for one answer. When it calls tools, each call runs (or, with
   * `executeTools: false`, is only recorded and answered with a placeholder) and the model is
   * asked again, up to `maxToolRounds`.
   *
   * With `onDelta` every round is requested with `stream: true` (Chat Completions server-sent
   * chunks, `stream_options.include_usage`) and `onDelta` gets the round's text so far after each
   * chunk that adds to it; a round that ends in tool calls is followed by the next round, whose
   * text starts again from empty. A retried round starts again from empty too. `onDelta` must not
   * throw (it is called synchronously between chunks). A stream that sends nothing for `timeoutMs`,
   * or ends without a `finish_reason`, counts as a network failure (retried).
   * @throws LlmError `LLM_UNAVAILABLE` after retries, `LLM_REJECTED` on 4xx, `LLM_EMPTY` on no text
   */
  async complete<C>(
    messages: ChatMessage[],
    opts: { tools?: ToolDefinition<C>[]; context?: C; executeTools?: boolean; signal?: AbortSignal; onDelta?: (textSoFar: string) => void } = {},
  ): Promise<Completion> {
    const client = await this.client();
    const started = performance.now();
    const usage: Usage = { prompt_tokens: 0, completion_tokens: 0 };
    const toolCalls: ToolCallRecord[] = [];
    const convo = [...messages];
    const tools = opts.tools ?? [];
    const rounds = this.options.maxToolRounds ?? 5;
    let model = this.options.model;
    for (let round = 0; ; round++) {
      const offerTools = tools.length > 0 && round < rounds;
      const params: OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming = {
        model: this.options.model,
        messages: convo,
        temperature: this.options.temperature,
        max_tokens: this.options.maxTokens,
        ...(offerTools
          ? {
              tools: tools.map((t) => ({
                type: "function" as const,
                function: { name: t.name, description: t.description, parameters: t.parameters },
              })),
            }
          : {}),
      };
      const res = await withRetries(
        async () => {
          try {
            // A signal of its own per request, linked to the caller's: the SDK never removes the
            // listener it adds, so the caller's long-lived stop signal would gather one per call.
            return await linkedSignal(opts.signal, async (signal) =>
              opts.onDelta ? await this.streamRound(client, params, opts.onDelta, signal) : roundOf(await client.chat.completions.create(params, { signal })),
            );
          } catch (error) {
            throw toLlmError(error, this.options.baseURL ?? DEFAULT_BASE_URL);
          }
        },
        {
          retries: this.options.maxRetries,
          baseMs: this.options.retry?.baseMs ?? 1000,
          maxMs: this.options.retry?.maxMs ?? 30_000,
          onRetry: this.options.onRetry,
          signal: opts.signal,
        },
      );
      model = res.model || model;
      usage.prompt_tokens += res.usage?.prompt_tokens ?? 0;
      usage.completion_tokens += res.usage?.completion_tokens ?? 0;
      const calls = res.toolCalls;
      if (calls.length > 0 && offerTools) {
        convo.push({ role: "assistant", content: res.content, tool_calls: calls });
        for (const call of calls) {
          const tool = tools.find((t) => t.name === call.function.name);
          let result: string;
          if (!tool) result = `error: unknown tool ${call.function.name}`;
          else if (opts.executeTools === false) result = "ok (not executed: test mode)";
          else {
            let args: Record<string, unknown>;
            try {
              args = JSON.parse(call.function.arguments || "{}") as Record<string, unknown>;
            } catch {
              args = {};
              result = "error: arguments were not valid JSON; call again with a JSON object";
              toolCalls.push({ name: call.function.name, arguments: call.function.arguments, result });
              convo.push({ role: "tool", tool_call_id: call.id, content: result });
              continue;
            }
            result = await tool.run(args, opts.context as C);
          }
          toolCalls.push({ name: call.function.name, arguments: call.function.arguments, result: opts.executeTools === false ? null : result });
          convo.push({ role: "tool", tool_call_id: call.id, content: result });
        }
        continue;
      }
      const text = (res.content ?? "").trim();
      if (!text) throw new LlmError("LLM_EMPTY", `model ${model} returned no text (finish_reason ${res.finishReason ?? "none"})`);
      return { text, model, usage, latencyMs: Math.round(performance.now() - started), toolCalls };
    }
  }

  /**
   * One round with `stream: true`: reads the server-sent chunks (`ChatCompletionChunk`), calls
   * `onDelta` with the text so far, and assembles the round as the non-streamed response would
   * be: content, `tool_calls` put together from their deltas (by `index`: `id`, `function.name`
   * and the `function.arguments` fragments in order), usage from the last chunk.
   * @throws the SDK's errors (mapped by the caller); LlmError `LLM_UNAVAILABLE` when no chunk comes
   *   for `timeoutMs` or the stream ends without `finish_reason`; the signal's reason (an
   *   AbortError) when `signal` aborts
   */
  private async streamRound(
    client: OpenAI,
    params: OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming,
    onDelta: (textSoFar: string) => void,
    signal: AbortSignal | undefined,
  ): Promise<Round> {
    // The SDK's timeout covers the request until the response headers; a stalled stream after
    // them is caught here: no chunk for `timeoutMs` aborts the request.
    const idle = new AbortController();
    const stopOnSignal = () => idle.abort(signal?.reason);
    if (signal?.aborted) idle.abort(signal.reason);
    else signal?.addEventListener("abort", stopOnSignal, { once: true });
    let stalled = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        idle.abort();
      }, this.options.timeoutMs);
    };
    const stall = (cause: unknown) =>
      new LlmError(
        "LLM_UNAVAILABLE",
        `model API at ${this.options.baseURL ?? DEFAULT_BASE_URL} stalled: its stream sent nothing for ${this.options.timeoutMs / 1000} s`,
        { cause },
      );
    const round: Round = { model: "", content: null, toolCalls: [], finishReason: null };
    const parts = new Map<number, { id: string; name: string; arguments: string }>();
    try {
      arm();
      const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } }, { signal: idle.signal });
      for await (const chunk of stream) {
        arm();
        round.model = chunk.model || round.model;
        if (chunk.usage) round.usage = { prompt_tokens: chunk.usage.prompt_tokens ?? 0, completion_tokens: chunk.usage.completion_tokens ?? 0 };
        const choice = chunk.choices?.[0];
        if (!choice) continue;
        round.finishReason = choice.finish_reason ?? round.finishReason;
        const delta = choice.delta;
        if (typeof delta?.content === "string" && delta.content) {
          round.content = (round.content ?? "") + delta.content;
          onDelta(round.content);
        }
        for (const d of delta?.tool_calls ?? []) {
          const part = parts.get(d.index) ?? { id: "", name: "", arguments: "" };
          if (d.id) part.id = d.id;
          if (d.function?.name) part.name += d.function.name;
          if (d.function?.arguments) part.arguments += d.function.arguments;
          parts.set(d.index, part);
        }
      }
    } catch (error) {
      if (stalled && !signal?.aborted) throw stall(error);
      throw error;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", stopOnSignal);
    }
    // The SDK ends the iteration quietly when the request is aborted: an abort is not an answer.
    if (idle.signal.aborted) throw stalled && !signal?.aborted ? stall(undefined) : (signal?.reason ?? new DOMException("aborted", "AbortError"));
    // A stream cut off without an error (a proxy closing it early) is not a whole answer either.
    if (!round.finishReason)
      throw new LlmError("LLM_UNAVAILABLE", `model API at ${this.options.baseURL ?? DEFAULT_BASE_URL} ended its stream before finish_reason (cut off)`);
    round.toolCalls = [...parts.entries()]
      .sort(([a], [b]) => a - b)
      .filter(([, p]) => p.name)
      .map(([i, p]) => ({ id: p.id || `call_${i}`, type: "function" as const, function: { name: p.name, arguments: p.arguments } }));
    return round;
  }
}

/** One model round, streamed or not, in the form the tool-call loop reads. */
interface Round {
  model: string;
  usage?: Usage;
  /** The assistant's text (null when it only called tools). */
  content: string | null;
  toolCalls: OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall[];
  finishReason: string | null;
}

/** A non-streamed Chat Completions response as a {@link Round}. */
function roundOf(res: OpenAI.Chat.Completions.ChatCompletion): Round {
  const choice = res.choices?.[0];
  return {
    model: res.model,
    usage: res.usage ? { prompt_tokens: res.usage.prompt_tokens ?? 0, completion_tokens: res.usage.completion_tokens ?? 0 } : undefined,
    content: choice?.message?.content ?? null,
    toolCalls: (choice?.message?.tool_calls ?? []).filter((c): c is OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall => c.type === "function"),
    finishReason: choice?.finish_reason ?? null,
  };
}

/**
 * Runs `fn` with an abort signal of its own that aborts when `outer` does (with its reason); the
 * link is removed when `fn` settles. The openai SDK adds a listener to the signal it is given and
 * never removes it: given a long-lived signal (the pipeline's stop signal), every request left one
 * behind, and adding a listener costs more the more there are (measured in bench/peer's profile).
 */
async function linkedSignal<T>(outer: AbortSignal | undefined, fn: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
  if (!outer) return fn(undefined);
  const inner = new AbortController();
  const onAbort = () => inner.abort(outer.reason);
  if (outer.aborted) onAbort();
  else outer.addEventListener("abort", onAbort, { once: true });
  try {
    return await fn(inner.signal);
  } finally {
    outer.removeEventListener("abort", onAbort);
  }
}

/** Where the openai SDK sends requests when no `baseURL` is given. */
export const DEFAULT_BASE_URL = "https://api.openai.com/v1";

/**
 * Maps SDK errors to LlmError carrying `status` and `retryAfterMs` for the retry policy; the
 * message names `baseURL`, so a wrong `llm.base_url` shows in the first line. A connection
 * error carries the socket's reason (`ECONNREFUSED`...) from its cause.
 */
export function toLlmError(error: unknown, baseURL: string): Error {
  if (error instanceof LlmError) return error;
  const e = error as { status?: number; headers?: Headers; message?: string; name?: string; constructor?: { name?: string } };
  if (e?.name === "AbortError" || e?.constructor?.name === "APIUserAbortError") return error as Error;
  const status = typeof e?.status === "number" ? e.status : undefined;
  const kind = e?.constructor?.name ?? e?.name ?? "Error";
  // OpenAI sends `retry-after-ms` (milliseconds) beside the standard `retry-after`.
  const headers = e?.headers && typeof e.headers.get === "function" ? e.headers : undefined;
  const exactMs = Number(headers?.get("retry-after-ms") ?? NaN);
  const retryAfterMs = Number.isFinite(exactMs) && exactMs >= 0 ? exactMs : parseRetryAfter(headers?.get("retry-after"));
  const reason = status ? `HTTP ${status}` : kind === "APIConnectionTimeoutError" ? "timeout" : "connection failed";
  // The SDK says only "Connection error."; the socket's code is on its cause (fetch's cause).
  const socket = status ? undefined : rootCode(error);
  const detail = `${(e?.message ?? "").slice(0, 300)}${socket && !(e?.message ?? "").includes(socket) ? ` (${socket})` : ""}`;
  const err = new LlmError(
    status && status < 500 && status !== 429 && status !== 408 ? "LLM_REJECTED" : "LLM_UNAVAILABLE",
    `model API at ${baseURL} ${reason}: ${detail}`,
    {
      cause: error,
      status,
      hint: status === 401 ? "check llm.api_key" : status === 404 ? "check llm.model and llm.base_url" : undefined,
    },
  );
  return Object.assign(err, { retryAfterMs });
}

/**
 * The socket's reason under an SDK connection error: the `code` (`ECONNREFUSED`, `ENOTFOUND`...)
 * of the innermost cause that has one, else the innermost cause's message (fetch: "bad port").
 */
function rootCode(error: unknown): string | undefined {
  let code: string | undefined;
  let last: string | undefined;
  const seen = new Set<unknown>([error]);
  for (
    let e = (error as { cause?: unknown }).cause as { cause?: unknown; code?: unknown; message?: unknown } | undefined;
    e && typeof e === "object" && !seen.has(e);
    e = e.cause as typeof e
  ) {
    seen.add(e);
    if (typeof e.code === "string" && /^E[A-Z_]+$/.test(e.code)) code = e.code;
    if (typeof e.message === "string" && e.message) last = e.message;
  }
  return code ?? last;
}
