import { EventEmitter } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";

/** A Bot API `MessageEntity` (only what a text message from a client carries here). */
export interface MessageEntity {
  type: "bot_command";
  /** UTF-16 code units, as the Bot API counts. */
  offset: number;
  length: number;
}

/**
 * The entities a Telegram client attaches to a typed text: a leading `/command` (optionally
 * `/command@bot`) is marked `bot_command`, as the official clients do (Bot API MessageEntity).
 * Without the mark a bot treats `/start` as plain text.
 */
export function commandEntities(text: string): MessageEntity[] {
  const m = /^\/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,64})?(?=\s|$)/.exec(text);
  return m ? [{ type: "bot_command", offset: 0, length: m[0].length }] : [];
}

/** A message the bot sent (sendMessage parameters as received). */
export interface SentMessage {
  chat_id: number;
  text: string;
  message_id: number;
}

/** The bot's own user, answered to getMe. */
const BOT_USER = {
  id: 100000001,
  is_bot: true,
  first_name: "Demo shop",
  username: "demo_shop_bot",
  can_join_groups: false,
  can_read_all_group_messages: false,
  supports_inline_queries: false,
};

/**
 * A minimal Bot API server on 127.0.0.1 for `bots demo`: one bot token, one private chat. It
 * answers the methods a polling bot calls (getMe, deleteWebhook, getUpdates with `offset` and
 * long-poll `timeout`, sendMessage, sendChatAction, sendMessageDraft (shown nowhere), answerCallbackQuery, setMyCommands) in the
 * Bot API's JSON shapes (`{ok, result}`, `{ok: false, error_code, description}`). Updates are
 * held until a getUpdates with a higher `offset` acknowledges them, as Telegram does.
 * Emits `sent` with a {@link SentMessage} for every sendMessage.
 */
export class DemoBotApi extends EventEmitter {
  private server?: http.Server;
  private updates: Array<{ update_id: number; message: Record<string, unknown> }> = [];
  // Ids start at the clock (ms), so a second demo on a kept database never repeats a message id
  // (the pipeline drops a repeated one as a duplicate, as it must for Telegram's resends).
  private nextUpdateId = Date.now();
  private nextMessageId = Date.now();
  private waiting = new Set<() => void>();
  /** Highest update_id the bot acknowledged (getUpdates `offset` − 1). */
  acked = 0;

  constructor(private readonly token: string) {
    super();
  }

  /** Listens on a free port of 127.0.0.1; returns the API root for `tg.api_root`. */
  async start(): Promise<string> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    return this.url;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  /** Answers pending long polls and closes the server. */
  async stop(): Promise<void> {
    for (const wake of this.waiting) wake();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /**
   * Queues a text from the user as a Bot API `message` update of their private chat (chat id =
   * user id), with a `bot_command` entity for a leading command.
   * @returns the update_id
   */
  userSays(user: { id: number; first_name: string }, text: string): number {
    const entities = commandEntities(text);
    const update_id = this.nextUpdateId++;
    this.updates.push({
      update_id,
      message: {
        message_id: this.nextMessageId++,
        date: Math.floor(Date.now() / 1000),
        chat: { id: user.id, type: "private", first_name: user.first_name },
        from: { id: user.id, is_bot: false, first_name: user.first_name, language_code: "ru" },
        text,
        ...(entities.length ? { entities } : {}),
      },
    });
    for (const wake of this.waiting) wake();
    return update_id;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const reply = (status: number, body: unknown) => void res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    const m = /^\/bot([^/]+)\/(\w+)$/.exec(req.url?.split("?")[0] ?? "");
    if (!m) return reply(404, { ok: false, error_code: 404, description: "Not Found" });
    if (decodeURIComponent(m[1]!) !== this.token) return reply(401, { ok: false, error_code: 401, description: "Unauthorized" });
    let params: Record<string, unknown> = {};
    const raw = Buffer.concat(chunks).toString("utf8");
    if (raw && /json/.test(String(req.headers["content-type"]))) {
      try {
        params = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        return reply(400, { ok: false, error_code: 400, description: "Bad Request: body is not JSON" });
      }
    }
    switch (m[2]) {
      case "getMe":
        return reply(200, { ok: true, result: BOT_USER });
      case "deleteWebhook":
      case "sendChatAction":
      case "sendMessageDraft":
      case "answerCallbackQuery":
      case "setMyCommands":
        return reply(200, { ok: true, result: true });
      case "getUpdates":
        return reply(200, { ok: true, result: await this.getUpdates(Number(params.offset ?? 0), Number(params.timeout ?? 0), req) });
      case "sendMessage": {
        const text = typeof params.text === "string" ? params.text : "";
        if (!text) return reply(400, { ok: false, error_code: 400, description: "Bad Request: message text is empty" });
        const sent: SentMessage = { chat_id: Number(params.chat_id), text, message_id: this.nextMessageId++ };
        this.emit("sent", sent);
        return reply(200, {
          ok: true,
          result: { message_id: sent.message_id, date: Math.floor(Date.now() / 1000), chat: { id: sent.chat_id, type: "private" }, from: BOT_USER, text },
        });
      }
      default:
        return reply(404, { ok: false, error_code: 404, description: `Not Found: ${m[2]} is not in the demo Bot API` });
    }
  }

  /** getUpdates: drops updates below `offset` (acknowledged), waits up to `timeoutS` for new ones. */
  private async getUpdates(offset: number, timeoutS: number, req: http.IncomingMessage): Promise<unknown[]> {
    if (offset > 0) {
      this.acked = Math.max(this.acked, offset - 1);
      this.updates = this.updates.filter((u) => u.update_id >= offset);
      this.emit("acked", this.acked);
    }
    if (!this.updates.length && timeoutS > 0) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiting.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(timeoutS, 30) * 1000);
        this.waiting.add(done);
        req.socket.once("close", done);
      });
    }
    return this.updates.slice(0, 100);
  }
}
