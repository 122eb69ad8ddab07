import http from "node:http";
import type { AddressInfo } from "node:net";

/** One message a bot sent (Bot API `sendMessage` parameters) and when the call arrived. */
export interface SentMessage {
  token: string;
  chatId: number;
  text: string;
  /** performance.now() of this process when the call arrived, ms. */
  at: number;
}

interface Waiter {
  res: http.ServerResponse;
  timer: NodeJS.Timeout;
}

interface BotState {
  id: number;
  /** Updates not yet confirmed by a getUpdates offset, oldest first. */
  queue: Array<{ update_id: number; message: Record<string, unknown> }>;
  nextUpdateId: number;
  nextMessageId: number;
  waiter?: Waiter;
}

/**
 * A light Bot API server for benches with many bots: one node:http server that speaks the Bot
 * API wire format (https://core.telegram.org/bots/api: `POST /bot<token>/<method>` with a JSON
 * or form body, answers `{ok, result}`) for the calls `bots` makes: getMe, deleteWebhook,
 * getUpdates (long poll up to `timeout` seconds; `offset` confirms earlier updates), sendMessage;
 * any other method answers `true`. Any token of the form `<digits>:<letters>` is a bot. It keeps
 * only queues and counters, so a thousand tokens cost little (telegram-test-api keeps far more).
 */
export class LightBotApi {
  private server?: http.Server;
  private readonly bots = new Map<string, BotState>();
  /** First getUpdates of each token, performance.now() ms. */
  readonly firstPoll = new Map<string, number>();
  /** When each update was made available, by `token|chat|text`, performance.now() ms. */
  readonly madeAvailable = new Map<string, number>();
  /** When each update was first returned by getUpdates, by `token|chat|text`, performance.now() ms. */
  readonly delivered = new Map<string, number>();
  readonly sent: SentMessage[] = [];
  /** Called for every sendMessage. */
  onSend?: (m: SentMessage) => void;
  calls = 0;

  /** Starts on 127.0.0.1 with a free port; returns the `api_root`. */
  async start(): Promise<string> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.keepAliveTimeout = 120_000;
    this.server.maxConnections = 100_000;
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    return this.url;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    for (const [token, b] of this.bots) if (b.waiter) this.flush(token, b);
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }

  /** A user writes `text` to the bot of `token` from a private chat whose id is the user id. */
  userSays(token: string, chatId: number, text: string): void {
    const b = this.state(token);
    const message_id = b.nextMessageId++;
    const user = { id: chatId, is_bot: false, first_name: `User${chatId}` };
    b.queue.push({
      update_id: b.nextUpdateId++,
      message: { message_id, date: Math.floor(Date.now() / 1000), chat: { id: chatId, type: "private", first_name: user.first_name }, from: user, text },
    });
    this.madeAvailable.set(`${token}|${chatId}|${text}`, performance.now());
    if (b.waiter) this.flush(token, b);
  }

  private state(token: string): BotState {
    let b = this.bots.get(token);
    if (!b) this.bots.set(token, (b = { id: Number(token.split(":")[0]), queue: [], nextUpdateId: 1, nextMessageId: 1 }));
    return b;
  }

  private deliver(token: string, res: http.ServerResponse, b: BotState): void {
    const now = performance.now();
    for (const u of b.queue) {
      const m = u.message as { chat: { id: number }; text: string };
      const key = `${token}|${m.chat.id}|${m.text}`;
      if (!this.delivered.has(key)) this.delivered.set(key, now);
    }
    this.reply(res, 200, { ok: true, result: b.queue });
  }

  private reply(res: http.ServerResponse, status: number, body: unknown): void {
    if (res.destroyed) return;
    const data = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(data) }).end(data);
  }

  private flush(token: string, b: BotState): void {
    const w = b.waiter!;
    b.waiter = undefined;
    clearTimeout(w.timer);
    this.deliver(token, w.res, b);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.calls++;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const m = /^\/bot(\d+:[A-Za-z0-9_-]+)\/([A-Za-z]+)/.exec(req.url ?? "");
    if (!m) return this.reply(res, 404, { ok: false, error_code: 404, description: "Not Found" });
    const [, token, method] = m as unknown as [string, string, string];
    const raw = Buffer.concat(chunks).toString("utf8");
    let body: Record<string, unknown> = {};
    if (raw) {
      if (String(req.headers["content-type"] ?? "").includes("json")) body = JSON.parse(raw) as Record<string, unknown>;
      else body = Object.fromEntries(new URLSearchParams(raw));
    }
    const b = this.state(token);
    switch (method) {
      case "getMe":
        return this.reply(res, 200, {
          ok: true,
          result: {
            id: b.id,
            is_bot: true,
            first_name: `Bench ${b.id}`,
            username: `bench_${b.id}_bot`,
            can_join_groups: true,
            can_read_all_group_messages: false,
            supports_inline_queries: false,
          },
        });
      case "getUpdates": {
        if (!this.firstPoll.has(token)) this.firstPoll.set(token, performance.now());
        const offset = Number(body.offset ?? 0);
        if (offset > 0) b.queue = b.queue.filter((u) => u.update_id >= offset);
        // One poller per token, as Telegram: a second one is refused.
        if (b.waiter) return this.reply(res, 409, { ok: false, error_code: 409, description: "Conflict: terminated by other getUpdates request" });
        const timeoutS = Number(body.timeout ?? 0);
        if (b.queue.length || timeoutS <= 0) return this.deliver(token, res, b);
        const timer = setTimeout(() => b.waiter?.res === res && this.flush(token, b), timeoutS * 1000);
        b.waiter = { res, timer };
        res.on("close", () => {
          if (b.waiter?.res !== res) return;
          clearTimeout(timer);
          b.waiter = undefined;
        });
        return;
      }
      case "sendMessage": {
        const sent: SentMessage = { token, chatId: Number(body.chat_id), text: String(body.text ?? ""), at: performance.now() };
        this.sent.push(sent);
        this.onSend?.(sent);
        return this.reply(res, 200, {
          ok: true,
          result: {
            message_id: b.nextMessageId++,
            date: Math.floor(Date.now() / 1000),
            chat: { id: sent.chatId, type: "private" },
            from: { id: b.id, is_bot: true, first_name: `Bench ${b.id}` },
            text: sent.text,
          },
        });
      }
      default:
        return this.reply(res, 200, { ok: true, result: true });
    }
  }
}
