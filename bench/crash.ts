/**
 * bench/crash: durable answers under a crash (issue "Durable answers").
 *
 * 1,000 messages over 200 Telegram chats go to a real `bin/bots.js start tg` process (Bot API
 * emulator behind a proxy that keeps Telegram's getUpdates offset rule, and an OpenAI-compatible
 * model with 500 ms latency, all local); at a random moment
 * while it answers, the process gets SIGKILL; then `bots start tg` runs again and answers the
 * backlog. Printed: messages answered, duplicates, chats answered out of order, credits charged
 * minus answers sent (in replies), `unconfirmed` rows (a kill between sending and recording),
 * and the time from the restart to the last answer against the goal
 * 1.2 × backlog / concurrency × latency.
 *
 *   node --import tsx bench/crash.ts            # SQLite in a temp folder
 *   MYSQL_URL=mysql://root@127.0.0.1:3306/test node --import tsx bench/crash.ts
 *   BENCH_MESSAGES=1000 BENCH_CHATS=200 BENCH_LATENCY=500 BENCH_CONCURRENCY=32 BENCH_RUNS=1
 */
import { openStore } from "../src/storage/index.js";
import { ensureBuilt, finished, spawnBots } from "../test/support/cli.js";
import { createTestDatabase } from "../test/support/db.js";
import { eventually } from "../test/support/harness.js";
import { Fixture } from "../test/support/fixture.js";
import { FakeOpenAI, lastUserText } from "../test/support/openai-server.js";
import { startTelegram } from "../test/support/telegram.js";
import { BotApiCluster, startConflictProxy } from "../test/support/conflict-proxy.js";

const N = Number(process.env.BENCH_MESSAGES ?? 1000);
const CHATS = Number(process.env.BENCH_CHATS ?? 200);
const LAT = Number(process.env.BENCH_LATENCY ?? 500);
const CONC = Number(process.env.BENCH_CONCURRENCY ?? 32);
const RUNS = Number(process.env.BENCH_RUNS ?? 1);
const TOKEN = "123456:BENCH-crash_token";
const COST = 500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function runOnce(run: number): Promise<void> {
  await ensureBuilt();
  const dialect = process.env.MYSQL_URL ? "mysql" : "sqlite";
  const db = await createTestDatabase(dialect);
  const fx = new Fixture();
  const { server, apiRoot: emulatorRoot } = await startTelegram();
  // The emulator marks updates read once returned; Telegram keeps them until a later offset
  // confirms them. Through this proxy an update fetched by the killed process but not yet
  // recorded is fetched again after the restart, as with the real Bot API.
  const botApi = await startConflictProxy(new BotApiCluster(emulatorRoot), "bench");
  const apiRoot = botApi.url;
  const llm = new FakeOpenAI();
  await llm.start();
  llm.respond = (req) => ({ text: `echo: ${lastUserText(req)}`, delayMs: LAT });
  const children: Array<ReturnType<typeof spawnBots>> = [];
  try {
    fx.write("prompts/p.md", "Be brief.");
    fx.bot(
      "bench-tg",
      [
        "channel: tg",
        "prompt: prompts/p.md",
        "llm:",
        "  model: m",
        "  api_key: sk-bench-key-000000",
        `  base_url: ${llm.url}`,
        `  concurrency: ${CONC}`,
        "  timeout_s: 30",
        "history: { max_messages: 4 }",
        "spam: { max_per_minute: 1000, duplicate_window_s: 0 }",
        "tg:",
        `  token: ${TOKEN}`,
        `  api_root: ${apiRoot}`,
      ].join("\n"),
    );
    fx.write(".env", `DATABASE_URL=${db.url}\n`);
    const store = await openStore(db.url);
    const initial = 1_000_000 * 100;
    await store.balance.topUp("default", initial);
    const start = async () => {
      const child = spawnBots(["start", "tg", "--drain-timeout", "5"], { cwd: fx.root });
      children.push(child);
      await eventually(() => child.out.stderr.includes("Running bench-tg"), 30_000, "start banner");
      return child;
    };
    const answered = async () =>
      Number(
        (
          await store.database.db
            .selectFrom("messages")
            .select((eb) => eb.fn.countAll<number>().as("n"))
            .where("direction", "=", "out")
            .executeTakeFirst()
        )?.n ?? 0,
      );

    const first = await start();
    const clients = new Map<number, ReturnType<typeof server.getClient>>();
    const perChat = Math.ceil(N / CHATS);
    // Users write from many chats at once; each chat in order.
    const sending = Promise.all(
      Array.from({ length: CHATS }, async (_, c) => {
        const chat = 1000 + c;
        const client = server.getClient(TOKEN, { userId: chat, chatId: chat, type: "private" });
        clients.set(chat, client);
        for (let k = 0; k < perChat; k++) {
          const i = k * CHATS + c;
          if (i < N) await client.sendMessage(client.makeMessage(`c${chat} m${k}`));
        }
      }),
    );
    // Kill at a random moment while answers go out: between 10% and 70% of the messages answered.
    const killAt = Math.floor(N * (0.1 + Math.random() * 0.6));
    await eventually(async () => (await answered()) >= killAt, 300_000, `${killAt} answers`);
    first.kill("SIGKILL");
    await finished(first, 10_000);
    await sending;
    const atKill = server.storage.botMessages.length;

    const restartAt = performance.now();
    const second = await start();
    let lastAnswer = restartAt;
    let seen = server.storage.botMessages.length;
    // Every recorded message should be answered; the ones the kill cut off between sending and
    // recording are `unconfirmed` and never sent again.
    const settled = async () => {
      if (server.storage.botMessages.length !== seen) {
        seen = server.storage.botMessages.length;
        lastAnswer = performance.now();
      }
      const rows = await store.database.db.selectFrom("messages").select(["status"]).where("direction", "=", "in").execute();
      return rows.length >= N && rows.every((r) => r.status === "answered" || r.status === "unconfirmed");
    };
    await eventually(settled, 600_000, "backlog answered");
    await sleep(300);
    second.kill("SIGTERM");
    await finished(second, 30_000);

    const texts = new Map<number, string[]>();
    for (const m of server.storage.botMessages) {
      const msg = m.message as { chat_id: number | string; text: string };
      const chat = Number(msg.chat_id);
      if (!texts.has(chat)) texts.set(chat, []);
      texts.get(chat)!.push(msg.text);
    }
    let duplicates = 0;
    let outOfOrder = 0;
    let answeredDistinct = 0;
    for (const [chat, list] of texts) {
      const uniq = new Set(list);
      duplicates += list.length - uniq.size;
      answeredDistinct += uniq.size;
      const order = [...uniq].map((t) => Number(/ m(\d+)$/.exec(t)?.[1] ?? -1));
      if (order.some((v, i) => i > 0 && v < order[i - 1]!)) outOfOrder++;
      void chat;
    }
    const sent = server.storage.botMessages.length;
    const balance = (await store.balance.get("default"))!.balance;
    const charged = (initial - balance) / COST;
    const unconfirmed = Number(
      (
        await store.database.db
          .selectFrom("messages")
          .select((eb) => eb.fn.countAll<number>().as("n"))
          .where("status", "=", "unconfirmed")
          .executeTakeFirst()
      )?.n ?? 0,
    );
    const ledgerOk = (await store.balance.ledgerSum("default")) === balance;
    const backlog = N - atKill;
    const clearS = (lastAnswer - restartAt) / 1000;
    const goalS = (1.2 * backlog * LAT) / CONC / 1000;
    console.log(
      [
        `run ${run} (${dialect}): ${N} messages over ${CHATS} chats, model ${LAT} ms, concurrency ${CONC}; SIGKILL after ${atKill} answers`,
        `  answered            ${answeredDistinct} / ${N}`,
        `  duplicates          ${duplicates}`,
        `  out-of-order chats  ${outOfOrder}`,
        `  charged - sent      ${charged - sent} (charged ${charged}, sent ${sent}; unconfirmed rows ${unconfirmed})`,
        `  ledger = balance    ${ledgerOk ? "yes" : "NO"}`,
        `  restart → last answer ${clearS.toFixed(2)} s for a backlog of ${backlog} (goal ≤ ${goalS.toFixed(2)} s = 1.2 × ${backlog} / ${CONC} × ${LAT} ms; ratio ${(clearS / goalS).toFixed(2)})`,
      ].join("\n"),
    );
    await store.close();
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await botApi.stop();
    await server.stop();
    await llm.stop();
    await db.drop();
    fx.cleanup();
  }
}

for (let r = 1; r <= RUNS; r++) await runOnce(r);
process.exit(0);
