/**
 * bench/dialogs: how fast `bots dialogs` answers on a big database (goal ≤ 300 ms).
 * Fills a fresh database with BENCH_MESSAGES (default 1,000,000) messages of one bot over
 * BENCH_THREADS (default 50,000) conversations, half incoming and half answers, then runs
 * `bots dialogs BOT` (the newest 50 conversations) and `bots dialogs BOT THREAD` (one
 * conversation) in-process through the CLI, BENCH_RUNS times each, and prints the medians. Each
 * run opens the database as the command does.
 *
 *   node --import tsx bench/dialogs.ts                      # SQLite in a temp file
 *   MYSQL_URL=mysql://root@127.0.0.1:3306/x node --import tsx bench/dialogs.ts mysql
 */
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { runCli } from "../src/cli/program.js";
import { openStore } from "../src/storage/index.js";
import { createTestDatabase } from "../test/support/db.js";

const dialect = (process.argv[2] ?? "sqlite") as "sqlite" | "mysql";
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 1_000_000);
const THREADS = Number(process.env.BENCH_THREADS ?? 50_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const BOT = "bench-bot";

const db = await createTestDatabase(dialect);
const dir = mkdtempSync(path.join(os.tmpdir(), "bots-bench-dialogs-"));
mkdirSync(path.join(dir, "configs"));
try {
  const store = await openStore(db.url);
  const t0 = performance.now();
  const start = Date.now() - 30 * 86_400_000;
  const batch = dialect === "sqlite" ? 400 : 1000;
  let rows: Array<Record<string, unknown>> = [];
  const flush = async () => {
    if (!rows.length) return;
    await store.database.db
      .insertInto("messages")
      .values(rows as never)
      .execute();
    rows = [];
  };
  // Pseudo-random but repeatable: thread i gets its messages spread over the month.
  let seed = 42;
  // mulberry32: integer arithmetic only, so the sequence is the same everywhere.
  const rnd = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = 0; i < MESSAGES; i += 2) {
    const thread = Math.floor(rnd() * THREADS);
    const at = start + Math.floor((i / MESSAGES) * 30 * 86_400_000);
    const base = {
      bot: BOT,
      channel: "tg",
      thread_key: `tg:${100000 + thread}`,
      chat_id: String(100000 + thread),
      meta: null,
      created_ms: at,
      updated_ms: at,
      text_hash: null,
      channel_message_id: String(i),
      error: null,
    };
    rows.push({
      ...base,
      direction: "in",
      status: rnd() < 0.02 ? "failed" : "answered",
      user_id: String(100000 + thread),
      user_name: `User ${thread}`,
      text: `Вопрос номер ${i} про доставку и оплату`,
      dedupe_key: `${thread}:${i}`,
      reply_to_id: null,
      model: null,
      prompt_tokens: null,
      completion_tokens: null,
      cost: null,
      latency_ms: null,
    });
    rows.push({
      ...base,
      direction: "out",
      status: "sent",
      created_ms: at + 900,
      updated_ms: at + 900,
      user_id: null,
      user_name: null,
      text: `Ответ на вопрос ${i}: доставка 300 ₽, оплата картой.`,
      dedupe_key: null,
      reply_to_id: null,
      model: "gpt-4o-mini",
      prompt_tokens: 420,
      completion_tokens: 60,
      cost: 500,
      latency_ms: 850,
    });
    if (rows.length >= batch) await flush();
    if (i % 200_000 === 0 && i) process.stderr.write(`  ${i.toLocaleString("en")} rows…\n`);
  }
  await flush();
  const fillS = (performance.now() - t0) / 1000;
  await store.close();

  const quiet = { write: () => true, isTTY: false };
  const time = async (args: string[]) => {
    const times: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const t = performance.now();
      let out = "";
      const code = await runCli(["--no-color", "--config-dir", path.join(dir, "configs"), "--db", db.url, ...args], {
        stdout: { write: (s: string) => (out += s), isTTY: false },
        stderr: quiet,
        stdinIsTTY: false,
        env: { PATH: process.env.PATH ?? "" },
      });
      times.push(performance.now() - t);
      if (code !== 0) throw new Error(`bots ${args.join(" ")} exited ${code}`);
      if (!out.includes("tg:")) throw new Error(`bots ${args.join(" ")} printed no conversation`);
    }
    times.sort((a, b) => a - b);
    return { median: times[Math.floor(times.length / 2)]!, min: times[0]!, max: times[times.length - 1]! };
  };
  const list = await time(["dialogs", BOT]);
  const thread = await time(["dialogs", BOT, `tg:${100000 + 777}`]);
  const failed = await time(["dialogs", BOT, "--status", "failed"]);
  const f = (x: { median: number; min: number; max: number }) => `median ${x.median.toFixed(1)} ms (min ${x.min.toFixed(1)}, max ${x.max.toFixed(1)})`;
  console.log(
    `bench/dialogs on ${dialect}: ${MESSAGES.toLocaleString("en")} messages over ${THREADS.toLocaleString("en")} threads (filled in ${fillS.toFixed(0)} s), ${RUNS} runs each, database opened per run`,
  );
  console.log(`  bots dialogs ${BOT}                   ${f(list)}`);
  console.log(`  bots dialogs ${BOT} tg:100777         ${f(thread)}`);
  console.log(`  bots dialogs ${BOT} --status failed   ${f(failed)}`);
  console.log(`  goal ≤ 300 ms each: ${list.median <= 300 && thread.median <= 300 ? "met" : "NOT met"}`);
} finally {
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
}
