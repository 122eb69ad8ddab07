import http from "node:http";
import type { AddressInfo } from "node:net";
import type { FakeBotFiles } from "./images.js";

/** What the proxy does with one Bot API call: forward it, or answer with a Bot API error (now or when the promise resolves). */
export type Intercept = (
  method: string,
  body: Record<string, unknown>,
  /** The request body as sent (multipart for file uploads such as sendDocument). */
  raw: Buffer,
) => InterceptVerdict | Promise<InterceptVerdict>;

/** An {@link Intercept}'s answer: a Bot API error, a result, a dropped connection, or undefined to forward the call. */
type InterceptVerdict = { error_code: number; description: string; retry_after?: number } | { result: unknown } | "drop" | undefined;

/**
 * An HTTP proxy in front of the Bot API emulator that can answer chosen calls with real Bot API
 * error bodies (`{ok:false, error_code, description, parameters}`) or drop the connection, and
 * serve `getFile` and file downloads (which the emulator lacks) from `files`.
 */
export async function startBotApiProxy(
  target: string,
  intercept: Intercept,
  files?: FakeBotFiles,
): Promise<{ url: string; calls: string[]; stop(): Promise<void> }> {
  const calls: string[] = [];
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const served = files?.handle(req, raw);
    if (served) {
      res.writeHead(served.status, { "content-type": served.type, "content-length": served.body.length }).end(served.body);
      return;
    }
    const method = (req.url ?? "").split("/").pop()!.split("?")[0]!;
    calls.push(method);
    let body: Record<string, unknown> = {};
    try {
      body = raw.length ? (JSON.parse(raw.toString("utf8")) as Record<string, unknown>) : {};
    } catch {
      body = {};
    }
    const verdict = await intercept(method, body, raw);
    if (verdict === "drop") {
      req.socket.destroy();
      return;
    }
    if (verdict && "result" in verdict) {
      // Methods the emulator lacks (sendDocument): answered here as the Bot API would.
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ok: true, result: verdict.result }));
      return;
    }
    if (verdict) {
      res.writeHead(verdict.error_code, { "content-type": "application/json" }).end(
        JSON.stringify({
          ok: false,
          error_code: verdict.error_code,
          description: verdict.description,
          ...(verdict.retry_after ? { parameters: { retry_after: verdict.retry_after } } : {}),
        }),
      );
      return;
    }
    try {
      const r = await fetch(target + req.url, {
        method: req.method,
        headers: { "content-type": req.headers["content-type"] ?? "application/json" },
        body: req.method === "GET" ? undefined : raw,
      });
      res.writeHead(r.status, { "content-type": r.headers.get("content-type") ?? "application/json" }).end(Buffer.from(await r.arrayBuffer()));
    } catch {
      // The emulator stopped under a call in flight (test teardown): answer as a gateway would.
      if (!res.headersSent) res.writeHead(502).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** One `sendMessageDraft` call the draft proxy received. */
export interface DraftCall {
  chat_id: number;
  draft_id: number;
  text: string;
  /** When it arrived, performance.now() ms. */
  at: number;
}

/** One `sendChatAction` call the draft proxy received. */
export interface ChatActionCall {
  chat_id: number;
  action: string;
  /** When it arrived, performance.now() ms. */
  at: number;
}

/**
 * What the draft proxy answers to the `n`-th (0-based) `sendMessageDraft` call: true, a Bot API
 * error, a dropped connection, or true after `delayMs` (a call that reaches the Bot API late: it
 * is recorded, and takes its place in `order`, only then).
 */
export type DraftVerdict = { error_code: number; description: string; retry_after?: number } | "drop" | { delayMs: number } | undefined;

/**
 * A Bot API proxy in front of the emulator (which lacks `sendMessageDraft`) that answers
 * `sendMessageDraft` and `sendChatAction` itself, recording each call, and passes every other call through (see
 * {@link startBotApiProxy}). `refuse` decides each draft call's answer: by default `true`;
 * a Bot API error (400, 429 with `retry_after`) or a dropped connection when it says so.
 */
export async function startDraftProxy(
  target: string,
  refuse: (n: number, call: DraftCall) => DraftVerdict = () => undefined,
): Promise<{ url: string; calls: string[]; drafts: DraftCall[]; actions: ChatActionCall[]; order: string[]; stop(): Promise<void> }> {
  const drafts: DraftCall[] = [];
  const actions: ChatActionCall[] = [];
  /** `sendMessageDraft` (when recorded) and `sendMessage` (when it arrived), in the order the Bot API took them. */
  const order: string[] = [];
  let n = 0;
  const proxy = await startBotApiProxy(target, async (method, body) => {
    if (method === "sendChatAction") {
      actions.push({ chat_id: Number(body.chat_id), action: String(body.action ?? ""), at: performance.now() });
      return { result: true };
    }
    if (method === "sendMessage") order.push(method);
    if (method !== "sendMessageDraft") return undefined;
    const call: DraftCall = { chat_id: Number(body.chat_id), draft_id: Number(body.draft_id), text: String(body.text ?? ""), at: performance.now() };
    const verdict = refuse(n++, call);
    if (verdict && typeof verdict === "object" && "delayMs" in verdict) {
      await new Promise((r) => setTimeout(r, verdict.delayMs));
      call.at = performance.now();
    }
    drafts.push(call);
    order.push(method);
    return verdict && !(typeof verdict === "object" && "delayMs" in verdict) ? verdict : { result: true };
  });
  return { ...proxy, drafts, actions, order };
}
