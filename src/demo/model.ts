import http from "node:http";
import type { AddressInfo } from "node:net";

/** The label every answer of the demo model starts with. */
export const DEMO_LABEL = "[demo model: quotes the bot's prompt, no AI]";

/** Words of a text as comparable stems: lower case, letters and digits, the first 5 characters. */
function stems(text: string): Set<string> {
  return new Set((text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []).filter((w) => w.length >= 3 || /^\d+$/.test(w)).map((w) => w.slice(0, 5)));
}

/**
 * The demo model's answer: the sentences of the system prompt that share the most words (by a
 * 5-character stem, so "доставка" meets "доставки") with the user's last message, at most two,
 * after {@link DEMO_LABEL}; the prompt's first sentence when none shares a word.
 * @param system the system prompt as the bot sent it
 * @param user the user's last message
 */
export function demoAnswer(system: string, user: string): string {
  const sentences = system
    .split(/\n+|(?<=[.!?])\s+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const asked = stems(user);
  const scored = sentences.map((s, i) => ({ s, i, score: [...stems(s)].filter((w) => asked.has(w)).length }));
  const best = Math.max(0, ...scored.map((x) => x.score));
  if (best === 0) return `${DEMO_LABEL} Nothing in my prompt matches that. It begins: «${sentences[0] ?? ""}»`;
  const picked = scored
    .filter((x) => x.score === best)
    .slice(0, 2)
    .sort((a, b) => a.i - b.i)
    .map((x) => x.s);
  return `${DEMO_LABEL} ${picked.join(" ")}`;
}

/** Text of a Chat Completions message `content` (a string or content parts). */
function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content))
    return content
      .map((p) => (p && typeof p === "object" && (p as { type?: string }).type === "text" ? String((p as { text?: unknown }).text ?? "") : ""))
      .join(" ");
  return "";
}

/**
 * A local OpenAI-compatible server (`POST /v1/chat/completions`, Chat Completions wire format)
 * for `bots demo`: answers with {@link demoAnswer}; `usage` counts about four characters a token.
 * A request with `stream: true` gets the same answer as server-sent chunks, a line a chunk, then
 * the usage and `data: [DONE]`.
 */
export class DemoModel {
  private server?: http.Server;

  /** Listens on a free port of 127.0.0.1; returns the base URL for `llm.base_url` (ends with /v1). */
  async start(): Promise<string> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    return this.url;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}/v1`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const reply = (status: number, body: unknown) => void res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    if (req.method !== "POST" || !req.url?.endsWith("/chat/completions"))
      return reply(404, { error: { message: "the demo model serves POST /v1/chat/completions only", type: "invalid_request_error" } });
    let body: { model?: string; messages?: Array<{ role: string; content: unknown }>; stream?: boolean };
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as typeof body;
    } catch {
      return reply(400, { error: { message: "body is not JSON", type: "invalid_request_error" } });
    }
    const messages = body.messages ?? [];
    const system = messages
      .filter((m) => m.role === "system")
      .map((m) => textOf(m.content))
      .join("\n");
    const user = textOf([...messages].reverse().find((m) => m.role === "user")?.content);
    const text = demoAnswer(system, user);
    const promptTokens = Math.ceil(messages.reduce((n, m) => n + textOf(m.content).length, 0) / 4);
    const completionTokens = Math.ceil(text.length / 4);
    const usage = { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
    if (body.stream) {
      const head = { id: `chatcmpl-demo-${Date.now()}`, object: "chat.completion.chunk", created: Math.floor(Date.now() / 1000), model: body.model ?? "demo" };
      const lines = text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
      const events = [
        ...lines.map((content, i) => ({
          ...head,
          choices: [{ index: 0, delta: i === 0 ? { role: "assistant", content } : { content }, finish_reason: null }],
        })),
        { ...head, choices: [{ index: 0, delta: {}, finish_reason: "stop" }] },
        { ...head, choices: [], usage },
      ];
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.end(`${events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join("")}data: [DONE]\n\n`);
      return;
    }
    reply(200, {
      id: `chatcmpl-demo-${Date.now()}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: body.model ?? "demo",
      choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "stop" }],
      usage,
    });
  }
}
