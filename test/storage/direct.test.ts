import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { transact } from "../../src/storage/db.js";
import { openStore, type Store } from "../../src/storage/index.js";
import { PreparedQueries } from "../../src/storage/prepared.js";
import { createTestDatabase, dialects } from "../support/db.js";

/** An incoming message as the record stage stores it. */
const incoming = (n: number) => ({
  bot: "shop",
  channel: "tg" as const,
  thread_key: "tg:1",
  chat_id: "1",
  user_id: "1",
  user_name: "Ann",
  text: `message ${n}`,
  dedupe_key: `tg:update:${n}`,
  channel_message_id: String(n),
  meta: { kind: "messages" },
  status: "received" as const,
  error: null,
  created_ms: 1,
});

/** Settles when every callback queued so far (promise jobs, I/O callbacks) has run, a few rounds over. */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

async function cursorNames(store: Store): Promise<string[]> {
  const rows = await store.database.db.selectFrom("cursors").select("name").orderBy("name").execute();
  return rows.map((r) => r.name);
}

for (const dialect of dialects()) {
  describe(`statements beside a transaction (${dialect})`, () => {
    test("a statement made while a transaction is open is not part of it: a rollback keeps it", async () => {
      const tdb = await createTestDatabase(dialect);
      const store = await openStore(tdb.url);
      try {
        const prepared = new PreparedQueries();
        let resume!: () => void;
        const paused = new Promise<void>((r) => (resume = r));
        let inside!: () => void;
        const entered = new Promise<void>((r) => (inside = r));
        const tx = transact(store.database.db, async (trx) => {
          // A prepared statement inside the transaction (straight on the connection on SQLite).
          await prepared.run(trx, "cursor", (p) => trx.insertInto("cursors").values({ bot: p("bot"), name: p("name"), value: "1", updated_ms: 1 }), {
            bot: "shop",
            name: "inside",
          });
          inside();
          await paused;
          throw new Error("rolled back on purpose");
        });
        await entered;
        // The repositories' statements on the database itself, while the transaction is open.
        let recorded: number | null | undefined;
        const write = store.messages.insertIncoming(incoming(1)).then((id) => (recorded = id));
        await settle();
        // SQLite has one connection: the write waits for the transaction to end.
        if (dialect === "sqlite") assert.equal(recorded, undefined, "a write ran on the connection while the transaction held it");
        resume();
        await assert.rejects(tx, /rolled back on purpose/);
        await write;
        assert.equal(typeof recorded, "number");
        assert.deepEqual(await cursorNames(store), [], "the transaction's own row was rolled back");
        const row = await store.messages.get(recorded!);
        assert.equal(row?.text, "message 1", "the write made beside the transaction was kept");
        // And a committed transaction keeps its row.
        await transact(store.database.db, (trx) =>
          prepared.run(trx, "cursor", (p) => trx.insertInto("cursors").values({ bot: p("bot"), name: p("name"), value: "1", updated_ms: 1 }), {
            bot: "shop",
            name: "committed",
          }),
        );
        assert.deepEqual(await cursorNames(store), ["committed"]);
      } finally {
        await store.close();
        await tdb.drop();
      }
    });

    test("many statements and transactions at once each run whole, and every one is reported", async () => {
      const tdb = await createTestDatabase(dialect);
      const store = await openStore(tdb.url);
      try {
        await store.balance.topUp("default", 100_000);
        const events: string[] = [];
        const stop = store.database.observer.subscribe((e) => events.push(`${e.kind}:${e.ok}`));
        const ids = await Promise.all(
          Array.from({ length: 40 }, async (_, i) => {
            const id = (await store.messages.insertIncoming(incoming(100 + i)))!;
            const reservation = await store.balance.reserve("default", 500, 0, id);
            assert.ok(reservation, "the balance pays");
            await store.messages.history("shop", "tg:1", id, 20);
            return id;
          }),
        );
        stop();
        assert.equal(new Set(ids).size, 40);
        // Each message: its insert and its reservation's commit are writes the observer saw succeed.
        assert.equal(events.filter((e) => e === "write:true").length, 80);
        assert.equal(events.filter((e) => e.endsWith(":false")).length, 0);
        const account = await store.balance.get("default");
        assert.equal(account?.balance, 100_000 - 40 * 500);
        assert.equal(await store.balance.ledgerSum("default"), account?.balance);
      } finally {
        await store.close();
        await tdb.drop();
      }
    });
  });
}
