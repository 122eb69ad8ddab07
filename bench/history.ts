/**
 * bench/history: what reading a thread's history for an answer costs as the thread grows. Fills
 * one thread with N turns (an answered user message and its answer each; N = 100, 1,000,
 * 10,000), then reads the 20 turns before the newest message (`MessagesRepo.history`, as the
 * context stage does) BENCH_RUNS times and prints the median per read. The read should not grow
 * with the thread.
 *
 *   npm run bench:history                                   # SQLite in a temp file
 *   MYSQL_URL=mysql://root@127.0.0.1:3306/x npm run bench:history -- mysql
 */
import { openStore } from "../src/storage/index.js";
import { createTestDatabase } from "../test/support/db.js";

const dialect = (process.argv[2] ?? "sqlite") as "sqlite" | "mysql";
const RUNS = Number(process.env.BENCH_RUNS ?? 200);
const BOT = "bench-bot";
const LIMIT = 20;

const db = await createTestDatabase(dialect);
try {
  const store = await openStore(db.url);
  let turns = 0;
  let lastId = 0;
  console.log(`bench/history  db=${dialect} limit=${LIMIT} runs=${RUNS}`);
  for (const size of [100, 1000, 10_000]) {
    const rows: Array<Record<string, unknown>> = [];
    const flush = async () => {
      for (let i = 0; i < rows.length; i += 400)
        await store.database.db
          .insertInto("messages")
          .values(rows.slice(i, i + 400) as never)
          .execute();
      rows.length = 0;
    };
    // Ids are given so that each answer can point at its message in the same batch.
    for (; turns < size; turns++) {
      const base = { bot: BOT, channel: "tg", thread_key: "tg:1", chat_id: "1", user_id: "1", created_ms: Date.now(), updated_ms: Date.now() };
      const q = ++lastId;
      rows.push({ ...base, id: q, direction: "in", status: "answered", text: `question ${turns}`, dedupe_key: `u${turns}` });
      rows.push({ ...base, id: ++lastId, direction: "out", status: "sent", text: `answer ${turns}`, reply_to_id: q });
    }
    await flush();
    const before = lastId + 1;
    const times: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const t = performance.now();
      const h = await store.messages.history(BOT, "tg:1", before, LIMIT);
      times.push(performance.now() - t);
      if (h.length !== LIMIT) throw new Error(`expected ${LIMIT} turns, got ${h.length}`);
    }
    times.sort((a, b) => a - b);
    console.log(
      `thread of ${String(size).padStart(6)} turns   history read median ${(times[RUNS >> 1]! * 1000).toFixed(0).padStart(6)} µs   p95 ${(times[Math.floor(RUNS * 0.95)]! * 1000).toFixed(0).padStart(6)} µs`,
    );
  }
  await store.close();
} finally {
  await db.drop();
}
