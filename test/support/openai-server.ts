import type http from "node:http";
import { closeServer, listenLocal, originOf } from "./http.js";

/** One recorded request to POST /v1/chat/completions. */
export interface RecordedRequest {
  model: string;
  messages: Array<{ role: string; content: unknown; tool_calls?: unknown; tool_call_id?: string }>;
  tools?: Array<{ type: string; function: { name: string; parameters: unknown } }>;
  temperature?: number;
  max_tokens?: number;
  /** `stream: true`: answered with server-sent chunks. */
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  headers: http.IncomingHttpHeaders;
  at: number;
}

/** One recorded request to POST /v1/audio/transcriptions (multipart form fields). */
export interface RecordedTranscription {
  model: string;
  language: string | null;
  response_format: string | null;
  /** The uploaded file's name and type as the client sent them. */
  filename: string;
  type: string;
  bytes: Buffer;
  headers: http.IncomingHttpHeaders;
}

/** What the server does for one transcription: the text, or a failure. */
export type TranscriptionBehaviour =
  | { text: string; delayMs?: number }
  | { status: number; body?: unknown; headers?: Record<string, string>; delayMs?: number }
  | { dropConnection: true };

/**
 * What the server does for one request. `delayMs` comes before the response; for a streamed
 * request (`stream: true`) `chunkDelayMs` comes before each chunk after the first (default
 * {@link FakeOpenAI.chunkDelayMs}).
 */
export type Behaviour =
  | {
      text: string;
      delayMs?: number;
      chunkDelayMs?: number;
      /** Streamed only: the connection is destroyed after this many chunks. */
      cutAfterChunks?: number;
      /** Streamed only: the response ends cleanly after this many chunks (no finish_reason, no `[DONE]`). */
      endAfterChunks?: number;
      /** Streamed only: nothing more is sent after this many chunks (the response stays open). */
      stallAfterChunks?: number;
    }
  | { toolCalls: Array<{ name: string; arguments: Record<string, unknown> | string }>; delayMs?: number; chunkDelayMs?: number }
  | { status: number; body?: unknown; headers?: Record<string, string>; delayMs?: number }
  | { hang: true }
  | { dropConnection: true };

/**
 * A local OpenAI-compatible server (Chat Completions wire format) for tests: records every
 * request, answers by default with `echo: <last user text>` after `latencyMs`, and can be told
 * per request to fail (any status, `Retry-After`), hang, drop the connection or call tools. A
 * request with `stream: true` gets its answer as server-sent events (`data: <chunk>` lines, then
 * `data: [DONE]`): the text a word a chunk, a tool call as its id and name, then its arguments in
 * fragments, and the usage last when `stream_options.include_usage` asks for it.
 * `POST /v1/audio/transcriptions` (multipart, the Audio API's wire format) is recorded in
 * `transcriptions` and answered `{"text": ...}` by `transcribe` (default: the uploaded bytes read
 * as UTF-8 after a 4-byte container magic, so a test's fake audio carries its own words) or
 * `transcriptionScript`; `transcriptionDown` answers 503 to every one.
 */
export class FakeOpenAI {
  readonly requests: RecordedRequest[] = [];
  /** Behaviours used once each, in order, before falling back to `respond`. */
  readonly script: Behaviour[] = [];
  /** Default behaviour; receives the request. */
  respond: (req: RecordedRequest) => Behaviour = (req) => ({ text: `echo: ${lastUserText(req)}` });
  latencyMs = 0;
  /** Pause before each streamed chunk after the first, ms. */
  chunkDelayMs = 0;
  readonly transcriptions: RecordedTranscription[] = [];
  readonly transcriptionScript: TranscriptionBehaviour[] = [];
  transcribe: (req: RecordedTranscription) => TranscriptionBehaviour = (req) => ({ text: req.bytes.subarray(4).toString("utf8") });
  /** While true, every transcription is answered 503 (an outage of the audio endpoint). */
  transcriptionDown = false;
  private server?: http.Server;
  private readonly hanging = new Set<http.ServerResponse>();

  /**
   * Listens on 127.0.0.1 (port 0).
   * @param keepAliveMs how long an idle client connection is kept, ms (default 1000, so a stopped
   *   test leaves no idle sockets behind for long; undici, the SDK's fetch, then opens a connection
   *   per request, as its keep-alive threshold is 1 s too)
   */
  async start(keepAliveMs?: number): Promise<string> {
    this.server = await listenLocal((req, res) => void this.handle(req, res));
    if (keepAliveMs !== undefined) this.server.keepAliveTimeout = keepAliveMs;
    return this.url;
  }

  /** Base URL for the SDK's `baseURL` (ends with /v1). */
  get url(): string {
    return `${originOf(this.server!)}/v1`;
  }

  async stop(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    await closeServer(this.server);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.method === "POST" && req.url?.endsWith("/audio/transcriptions")) return this.handleTranscription(req, res, Buffer.concat(chunks));
    if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "not found", type: "invalid_request_error" } }));
      return;
    }
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Omit<RecordedRequest, "headers" | "at">;
    const rec: RecordedRequest = { ...body, headers: req.headers, at: Date.now() };
    this.requests.push(rec);
    const b = this.script.shift() ?? this.respond(rec);
    if ("hang" in b) {
      this.hanging.add(res);
      res.on("close", () => this.hanging.delete(res));
      return;
    }
    if ("dropConnection" in b) {
      req.socket.destroy();
      return;
    }
    const delay = b.delayMs ?? this.latencyMs;
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    if (res.destroyed) return;
    if ("status" in b) {
      res
        .writeHead(b.status, { "content-type": "application/json", ...b.headers })
        .end(JSON.stringify(b.body ?? { error: { message: `injected ${b.status}`, type: "server_error" } }));
      return;
    }
    const promptTokens = Math.ceil(JSON.stringify(rec.messages).length / 4);
    if (rec.stream) {
      await this.stream(res, rec, b, promptTokens);
      return;
    }
    const message =
      "text" in b
        ? { role: "assistant", content: b.text }
        : {
            role: "assistant",
            content: null,
            tool_calls: b.toolCalls.map((t, i) => ({
              id: `call_${this.requests.length}_${i}`,
              type: "function",
              function: { name: t.name, arguments: typeof t.arguments === "string" ? t.arguments : JSON.stringify(t.arguments) },
            })),
          };
    const completionTokens = "text" in b ? Math.ceil(b.text.length / 4) : 10;
    res.writeHead(200, { "content-type": "application/json" }).end(
      JSON.stringify({
        id: `chatcmpl-${this.requests.length}`,
        object: "chat.completion",
        created: Math.floor(Date.now() / 1000),
        model: rec.model,
        choices: [{ index: 0, message, finish_reason: "text" in b ? "stop" : "tool_calls" }],
        usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
      }),
    );
  }

  /** Answers a `stream: true` request with Chat Completions chunks (`chat.completion.chunk`). */
  private async stream(
    res: http.ServerResponse,
    rec: RecordedRequest,
    b: Extract<Behaviour, { text: string } | { toolCalls: unknown }>,
    promptTokens: number,
  ): Promise<void> {
    const id = `chatcmpl-${this.requests.length}`;
    const created = Math.floor(Date.now() / 1000);
    const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({
      id,
      object: "chat.completion.chunk",
      created,
      model: rec.model,
      choices: [{ index: 0, delta, finish_reason: finish }],
    });
    const chunks: unknown[] = [];
    if ("text" in b) {
      const pieces = streamPieces(b.text);
      for (const [i, p] of pieces.entries()) chunks.push(chunk(i === 0 ? { role: "assistant", content: p } : { content: p }));
      chunks.push(chunk({}, "stop"));
    } else {
      b.toolCalls.forEach((t, i) => {
        const args = typeof t.arguments === "string" ? t.arguments : JSON.stringify(t.arguments);
        chunks.push(
          chunk({
            ...(i === 0 ? { role: "assistant", content: null } : {}),
            tool_calls: [{ index: i, id: `call_${this.requests.length}_${i}`, type: "function", function: { name: t.name, arguments: "" } }],
          }),
        );
        for (const f of argumentFragments(args)) chunks.push(chunk({ tool_calls: [{ index: i, function: { arguments: f } }] }));
      });
      chunks.push(chunk({}, "tool_calls"));
    }
    const completionTokens = "text" in b ? Math.ceil(b.text.length / 4) : 10;
    if (rec.stream_options?.include_usage)
      chunks.push({
        id,
        object: "chat.completion.chunk",
        created,
        model: rec.model,
        choices: [],
        usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
      });
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const pause = b.chunkDelayMs ?? this.chunkDelayMs;
    // Until it ends: a stalled stream is destroyed by stop().
    this.hanging.add(res);
    res.on("close", () => this.hanging.delete(res));
    for (const [i, c] of chunks.entries()) {
      if (i > 0 && pause > 0) await new Promise((r) => setTimeout(r, pause));
      if (res.destroyed) return;
      if ("text" in b && i === b.cutAfterChunks) {
        res.socket?.destroy();
        return;
      }
      if ("text" in b && i === b.stallAfterChunks) return;
      if ("text" in b && i === b.endAfterChunks) {
        res.end();
        return;
      }
      res.write(`data: ${JSON.stringify(c)}\n\n`);
    }
    res.end("data: [DONE]\n\n");
  }

  /** Parses the multipart body (through the Fetch API's own form-data parser) and answers as told. */
  private async handleTranscription(req: http.IncomingMessage, res: http.ServerResponse, raw: Buffer): Promise<void> {
    const form = await new Request("http://x/", {
      method: "POST",
      headers: { "content-type": req.headers["content-type"] ?? "" },
      body: new Uint8Array(raw),
    }).formData();
    const file = form.get("file");
    if (!(file instanceof File)) {
      res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "file is required", type: "invalid_request_error" } }));
      return;
    }
    const rec: RecordedTranscription = {
      model: String(form.get("model") ?? ""),
      language: form.get("language") as string | null,
      response_format: form.get("response_format") as string | null,
      filename: file.name,
      type: file.type,
      bytes: Buffer.from(await file.arrayBuffer()),
      headers: req.headers,
    };
    this.transcriptions.push(rec);
    const b: TranscriptionBehaviour = this.transcriptionDown
      ? { status: 503, body: { error: { message: "transcription unavailable", type: "server_error" } } }
      : (this.transcriptionScript.shift() ?? this.transcribe(rec));
    if ("dropConnection" in b) {
      req.socket.destroy();
      return;
    }
    if (b.delayMs) await new Promise((r) => setTimeout(r, b.delayMs));
    if ("status" in b) {
      res
        .writeHead(b.status, { "content-type": "application/json", ...b.headers })
        .end(JSON.stringify(b.body ?? { error: { message: `injected ${b.status}`, type: "server_error" } }));
      return;
    }
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ text: b.text }));
  }
}

/** The pieces of a text streamed one a chunk: each word with the spaces after it. */
export function streamPieces(text: string): string[] {
  return text.match(/\S+\s*|\s+/g) ?? [];
}

/** The arguments of a scripted tool call split in three fragments (as models stream them). */
function argumentFragments(args: string): string[] {
  const third = Math.ceil(args.length / 3);
  return [args.slice(0, third), args.slice(third, 2 * third), args.slice(2 * third)].filter((f) => f.length > 0);
}

/** The text of the last user message of a recorded request. */
export function lastUserText(req: RecordedRequest): string {
  const users = req.messages.filter((m) => m.role === "user");
  const c = users[users.length - 1]?.content;
  return typeof c === "string" ? c : JSON.stringify(c);
}
