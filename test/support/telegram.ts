import net from "node:net";
import { TelegramServer } from "telegram-test-api/lib/telegramServer.js";

/** A free TCP port on 127.0.0.1 (the emulator has no port 0 of its own). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Starts telegram-test-api (the Bot API emulator) on 127.0.0.1. */
export async function startTelegram(): Promise<{ server: TelegramServer; apiRoot: string }> {
  const port = await freePort();
  const server = new TelegramServer({ port, host: "127.0.0.1", storeTimeout: 600 });
  await server.start();
  return { server, apiRoot: server.config.apiURL };
}

/** A message the bot sent, as the emulator stored it (Bot API sendMessage parameters). */
export interface BotMessage {
  chat_id: number | string;
  text: string;
  reply_parameters?: { message_id: number };
  [k: string]: unknown;
}

/** Messages the bot sent to a chat so far, in order. */
export function botMessages(server: TelegramServer, chatId: number): BotMessage[] {
  return server.storage.botMessages.filter((m) => Number(m.message.chat_id) === chatId).map((m) => m.message as unknown as BotMessage);
}

/**
 * Waits until the bot has sent at least `n` messages to a chat (reads the emulator's store, so
 * no client polling marks anything read).
 * @throws Error naming what arrived when `timeoutMs` passes
 */
export async function waitForBotMessages(server: TelegramServer, chatId: number, n: number, timeoutMs = 10_000): Promise<BotMessage[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = botMessages(server, chatId);
    if (got.length >= n) return got;
    if (Date.now() > deadline)
      throw new Error(`chat ${chatId}: expected ${n} bot messages within ${timeoutMs} ms, got ${got.length}: ${JSON.stringify(got.map((m) => m.text))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Sends a user's text to the bot from a private chat whose id equals the user id. */
export async function userSays(server: TelegramServer, token: string, userId: number, text: string, extra: Record<string, unknown> = {}): Promise<void> {
  // One client per call: the emulator's client keeps polling after its timeout otherwise.
  const client = server.getClient(token, { userId, chatId: userId, firstName: `User${userId}`, userName: `user${userId}`, type: "private" });
  await client.sendMessage({ ...client.makeMessage(text), ...extra } as never);
}
