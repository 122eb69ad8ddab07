/**
 * A local stand-in for Telegram and OpenAI, to try `bots start tg` without a real token or key:
 * the Bot API emulator (telegram-test-api) and an OpenAI-compatible server that echoes. Type
 * lines to send them as a Telegram user; the bot's replies are printed.
 *
 *   npx tsx scripts/emulator.ts            # prints the command for another terminal
 *
 * `bots demo` does all of this in one command; this script is for trying other configs. A typed
 * `/start` carries a `bot_command` entity, as real clients send it.
 */
import readline from "node:readline";
import { TelegramServer } from "telegram-test-api/lib/telegramServer.js";
import { FakeOpenAI, lastUserText } from "../test/support/openai-server.js";
import { commandEntities } from "../src/demo/botapi.js";

const TG_PORT = Number(process.env.TG_PORT ?? 8081);
const TOKEN = process.env.TG_TOKEN ?? "123456:demo-token";
const tg = new TelegramServer({ port: TG_PORT, host: "127.0.0.1", storeTimeout: 3600 });
await tg.start();
const llm = new FakeOpenAI();
llm.respond = (req) => ({ text: `(demo model) You wrote: «${lastUserText(req)}». ${req.messages.length - 2} earlier turns in this chat.` });
await llm.start();
console.log(`Bot API emulator: http://127.0.0.1:${TG_PORT}   model: ${llm.url}`);
console.log(`Run the bot with:\n  TG_TOKEN=${TOKEN} TG_API_ROOT=http://127.0.0.1:${TG_PORT} OPENAI_API_KEY=demo OPENAI_BASE_URL=${llm.url} bots start tg`);
console.log("Type a message and press Enter to send it as user 1001; Ctrl-C quits.");
let seen = 0;
tg.on("AddedBotMessage", () => {
  for (const m of tg.storage.botMessages.slice(seen)) console.log(`bot → ${(m.message as { text: string }).text}`);
  seen = tg.storage.botMessages.length;
});
const client = tg.getClient(TOKEN, { userId: 1001, chatId: 1001, firstName: "Demo" });
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const text = line.trim();
  const entities = commandEntities(text);
  if (text) void client.sendMessage(client.makeMessage(text, entities.length ? { entities } : {}));
});
process.on("SIGINT", async () => {
  await tg.stop();
  await llm.stop();
  process.exit(0);
});
