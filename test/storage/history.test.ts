import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { openStore, type Store } from "../../src/storage/index.js";
import { HISTORY_SLACK } from "../../src/storage/messages.js";
import { createTestDatabase, dialects } from "../support/db.js";
import { seededRandom } from "../support/random.js";
import { storeRow, type TestRow } from "../support/rows.js";

const BOT = "shop";

/** Stores a row of the thread (or of another thread or bot) and returns its id. */
const row = (store: Store, r: TestRow & { text: string }) => storeRow(store, { bot: BOT, ...r });

/** The history by its definition, from every row of the thread: oldest first, at most `limit` turns. */
async function expected(store: Store, before: number, limit: number): Promise<string[]> {
  const rows = await store.database.db.selectFrom("messages").selectAll().where("bot", "=", BOT).where("thread_key", "=", "tg:1").execute();
  return rows
    .filter((r) => (r.direction === "in" ? r.status === "answered" && r.id < before : Number(r.reply_to_id) < before))
    .map((r) => ({ r, turn: Number(r.reply_to_id ?? r.id) }))
    .sort((a, b) => b.turn - a.turn || b.r.id - a.r.id)
    .slice(0, limit)
    .reverse()
    .map(({ r }) => r.text);
}

/** Statements the store runs while `fn` runs. */
async function statements(store: Store, fn: () => Promise<unknown>): Promise<number> {
  let n = 0;
  const stop = store.database.observer.subscribe(() => n++);
  try {
    await fn();
  } finally {
    stop();
  }
  return n;
}

for (const dialect of dialects()) {
  describe(`history read (${dialect})`, () => {
    test("a long thread's history reads only its newest rows and equals the whole thread's ordering by turn", async () => {
      const db = await createTestDatabase(dialect);
      const store = await openStore(db.url);
      try {
        // Turns of every kind, in a fixed pseudo-random mix: answered at once, answered after
        // later messages came (a burst), failed or filtered (not history), another thread's and
        // another bot's rows in between.
        const rand = seededRandom(7);
        const waiting: number[] = [];
        for (let i = 0; i < 400; i++) {
          const kind = rand(10);
          if (kind === 0) await row(store, { direction: "in", status: "failed", text: `failed ${i}` });
          else if (kind === 1) await row(store, { direction: "in", status: "filtered", text: `filtered ${i}` });
          else if (kind === 2) await row(store, { direction: "in", status: "answered", text: `other ${i}`, thread: "tg:2" });
          else if (kind === 3) await row(store, { direction: "in", status: "answered", text: `other bot ${i}`, bot: "other" });
          else waiting.push(await row(store, { direction: "in", status: "answered", text: `q${i}` }));
          // Answers follow at once or after up to three later messages.
          while (waiting.length > rand(4)) {
            const q = waiting.shift()!;
            await row(store, { direction: "out", status: "sent", text: `a${q}`, reply_to_id: q });
          }
        }
        for (const q of waiting) await row(store, { direction: "out", status: "sent", text: `a${q}`, reply_to_id: q });
        const ids = (await store.database.db.selectFrom("messages").select("id").where("thread_key", "=", "tg:1").where("direction", "=", "in").execute()).map(
          (r) => r.id,
        );
        for (const limit of [1, 3, 20]) {
          for (const before of [ids[5]!, ids[100]!, ids[ids.length - 1]!, ids[ids.length - 1]! + 1000]) {
            let got: string[] = [];
            const n = await statements(store, async () => {
              got = (await store.messages.history(BOT, "tg:1", before, limit)).map((t) => t.text);
            });
            assert.deepEqual(got, await expected(store, before, limit), `limit ${limit}, before ${before}`);
            assert.equal(n, 1, "one read of the newest rows");
          }
        }
      } finally {
        await store.close();
        await db.drop();
      }
    });

    test("answers stored after more later messages than the slack: the whole thread is read, same result", async () => {
      const db = await createTestDatabase(dialect);
      const store = await openStore(db.url);
      try {
        // A burst: many messages recorded before the first is answered, then all answered.
        const qs: number[] = [];
        for (let i = 0; i < HISTORY_SLACK + 10; i++) qs.push(await row(store, { direction: "in", status: "answered", text: `q${i}` }));
        for (const q of qs) await row(store, { direction: "out", status: "sent", text: `a${q}`, reply_to_id: q });
        const next = await row(store, { direction: "in", status: "received", text: "next" });
        let got: string[] = [];
        const n = await statements(store, async () => {
          got = (await store.messages.history(BOT, "tg:1", next, 4)).map((t) => t.text);
        });
        assert.deepEqual(got, await expected(store, next, 4));
        assert.equal(got.length, 4);
        assert.equal(n, 2, "the newest rows did not hold the answer: the thread is read by turn");
      } finally {
        await store.close();
        await db.drop();
      }
    });
  });
}
