/**
 * One bot of bench/peer in a process of its own, so its CPU time is its own
 * (`process.cpuUsage()`). `BENCH_BOT=grammy`: the peer, a plain grammY bot on @grammyjs/runner
 * written for the comparison (below); otherwise ours, as bench/pipeline.ts starts it
 * (`startBots`, the Telegram worker, SQLite, logs at info into a file). Both read the Bot API at
 * `BENCH_API_ROOT` with token `BENCH_TOKEN`, ask the model at `BENCH_LLM_URL` with at most
 * `BENCH_CONCURRENCY` calls in flight, keep 20 messages of history and take 5.00 credits a reply.
 *
 * IPC: sends `{ ready: true }` once polling; answers `{ cmd: "cpu" }` with `{ userMs, systemMs }`
 * (process.cpuUsage, ms) and `{ cmd: "stop" }` by stopping and exiting.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { TelegramWorker } from "../../src/channels/telegram/worker.js";
import { loadBotConfigs } from "../../src/config/load.js";
import { createLogging } from "../../src/logging.js";
import { startBots } from "../../src/runner.js";
import { WAL_CHECKPOINT_PAGES } from "../../src/storage/db.js";
import { openStore } from "../../src/storage/index.js";
import { Fixture } from "../../test/support/fixture.js";
import { loadBenchBot } from "./project.js";

const TOKEN = process.env.BENCH_TOKEN!;
const API_ROOT = process.env.BENCH_API_ROOT!;
const LLM_URL = process.env.BENCH_LLM_URL!;
const CONC = Number(process.env.BENCH_CONCURRENCY ?? 32);
/** History turns sent to the model, as `history.max_messages` of ours. */
const HISTORY = 20;
/** Cost of a reply, hundredths of a credit (our default `balance.cost_per_reply` 5). */
const COST = 500;
/** Pause after a getUpdates that returned nothing at once (the emulator does not long-poll), ms: ours gets the same. */
const IDLE_PAUSE_MS = 5;

const cpu = () => {
  const u = process.cpuUsage();
  return { userMs: u.user / 1000, systemMs: u.system / 1000 };
};

let stop: () => Promise<void>;
if (process.env.BENCH_BOT === "grammy") stop = await startPeer();
else stop = await startOurs();
process.on("message", async (m: { cmd: string }) => {
  if (m.cmd === "cpu") process.send!(cpu());
  if (m.cmd === "stop") {
    await stop();
    process.exit(0);
  }
});
process.send!({ ready: true });

/**
 * The peer: what a plain grammY bot with the same job does. Updates are fetched by the runner
 * and handled concurrently, one at a time per chat (`sequentialize`); each stores the user's
 * message, reads the chat's last 20 messages, takes the cost off the balance in one conditional
 * update, asks the model (at most `BENCH_CONCURRENCY` calls in flight), replies, and stores the
 * answer. SQLite with the pragmas of src/storage/db.ts (WAL, synchronous NORMAL, the checkpoint interval).
 */
async function startPeer(): Promise<() => Promise<void>> {
  const { Bot } = await import("grammy");
  const { run, sequentialize } = await import("@grammyjs/runner");
  const { default: OpenAI } = await import("openai");
  const { default: SQLite } = await import("better-sqlite3");

  const dir = mkdtempSync(path.join(os.tmpdir(), "bench-peer-"));
  const db = new SQLite(path.join(dir, "peer.db"));
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = ON");
  db.pragma(`wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`);
  db.exec(`
    CREATE TABLE accounts (account TEXT PRIMARY KEY, balance INTEGER NOT NULL);
    CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, chat_id INTEGER NOT NULL, role TEXT NOT NULL, text TEXT NOT NULL, created_ms INTEGER NOT NULL);
    CREATE INDEX messages_chat ON messages (chat_id, id);
    INSERT INTO accounts VALUES ('default', 100000000);
  `);
  const addMessage = db.prepare("INSERT INTO messages (chat_id, role, text, created_ms) VALUES (?, ?, ?, ?)");
  const lastMessages = db.prepare("SELECT role, text FROM messages WHERE chat_id = ? AND id < ? ORDER BY id DESC LIMIT ?");
  const charge = db.prepare("UPDATE accounts SET balance = balance - ? WHERE account = 'default' AND balance >= ?");

  // A counting semaphore: at most `limit` model calls at once, the rest wait in arrival order.
  let free = CONC;
  const waiting: Array<() => void> = [];
  const slot = async <T>(fn: () => Promise<T>): Promise<T> => {
    if (free > 0) free--;
    else await new Promise<void>((r) => waiting.push(r));
    try {
      return await fn();
    } finally {
      const nextInLine = waiting.shift();
      if (nextInLine) nextInLine();
      else free++;
    }
  };

  const openai = new OpenAI({ apiKey: "sk-bench", baseURL: LLM_URL, timeout: 30_000, maxRetries: 0 });
  const bot = new Bot(TOKEN, { client: { apiRoot: API_ROOT } });
  bot.api.config.use(async (prev, method, payload, signal) => {
    const res = await prev(method, payload, signal);
    if (method === "getUpdates" && res.ok && Array.isArray(res.result) && res.result.length === 0) await new Promise((r) => setTimeout(r, IDLE_PAUSE_MS));
    return res;
  });
  bot.use(sequentialize((ctx) => ctx.chat?.id.toString()));
  bot.on("message:text", async (ctx) => {
    const chatId = ctx.chat.id;
    const id = Number(addMessage.run(chatId, "user", ctx.message.text, Date.now()).lastInsertRowid);
    const history = (lastMessages.all(chatId, id, HISTORY) as Array<{ role: "user" | "assistant"; text: string }>).reverse();
    if (charge.run(COST, COST).changes !== 1) {
      await ctx.reply("The balance is empty.");
      return;
    }
    const completion = await slot(() =>
      openai.chat.completions.create({
        model: "bench",
        messages: [
          { role: "system", content: "You are bench-peer." },
          ...history.map((t) => ({ role: t.role, content: t.text })),
          { role: "user", content: ctx.message.text },
        ],
      }),
    );
    const text = completion.choices[0]?.message.content ?? "";
    await ctx.reply(text);
    addMessage.run(chatId, "assistant", text, Date.now());
  });
  bot.catch((err) => console.error("peer bot:", err.error));
  await bot.init();
  const runner = run(bot, { runner: { fetch: { timeout: 0 } } });
  return async () => {
    await runner.stop();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  };
}

/** Ours, as bench/pipeline.ts runs it. */
async function startOurs(): Promise<() => Promise<void>> {
  const fx = new Fixture();
  loadBenchBot(fx, { llmUrl: LLM_URL, apiRoot: API_ROOT, token: TOKEN, concurrency: CONC, history: HISTORY });
  const bot = loadBotConfigs(fx.configDir, {}).bots[0]!;
  const store = await openStore(`sqlite:${path.join(fx.root, "bots.db")}`);
  await store.balance.topUp("default", 100_000_000);
  const logging = createLogging({ logDir: fx.logDir, console: false, level: "info" });
  const running = await startBots({
    bots: [bot],
    store,
    logging,
    createWorker: (b, l) => TelegramWorker.create(b, l, { idlePauseMs: IDLE_PAUSE_MS }),
  });
  return async () => {
    await running.stop(10_000);
    await store.close();
    await logging.flush();
    fx.cleanup();
  };
}
