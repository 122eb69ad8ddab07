import assert from "node:assert/strict";
import { describe, test } from "node:test";
import SQLite from "better-sqlite3";
import { sql } from "kysely";
import { WAL_CHECKPOINT_PAGES } from "../../src/storage/db.js";
import { openStore, type Store } from "../../src/storage/index.js";
import { createTestDatabase, dialects } from "../support/db.js";
import { storeRow, type TestRow } from "../support/rows.js";

const BOT = "shop";

const row = (store: Store, r: TestRow) => storeRow(store, { bot: BOT, ...r });

/**
 * A small answered thread with a reservation that was refunded and one still open, so every
 * lookup below has rows to find.
 */
async function fill(store: Store): Promise<{ answered: number; open: number }> {
  await store.balance.topUp("default", 10_000);
  const answered = await row(store, { direction: "in", status: "answered", created_ms: 1_000, dedupe_key: "tg:u1" });
  await row(store, { direction: "out", status: "sent", created_ms: 2_000, reply_to_id: answered });
  const open = await row(store, { direction: "in", status: "received", created_ms: 3_000, dedupe_key: "tg:u2" });
  const refunded = await store.balance.reserve("default", 500, 0, answered);
  await store.balance.refund(refunded!);
  await store.balance.reserve("default", 500, 0, open);
  // A proactive message not sent yet: not a message of the bot's for `lastMessageMs`.
  await row(store, { direction: "out", status: "pending", created_ms: 9_000 });
  await row(store, { direction: "in", status: "answered", created_ms: 8_000, bot: "other" });
  return { answered, open };
}

describe("indexes (sqlite): every lookup of a message or a ledger row searches an index", () => {
  test("the partial indexes serve their lookups; no statement scans messages or the ledger", async () => {
    const db = await createTestDatabase("sqlite");
    // Every SQL text the store prepares (it prepares each text once, src/storage/db.ts).
    const seen = new Set<string>();
    const prepare = SQLite.prototype.prepare;
    SQLite.prototype.prepare = function (this: SQLite.Database, source: string) {
      seen.add(source);
      return prepare.call(this, source);
    } as typeof prepare;
    let store: Store | undefined;
    try {
      store = await openStore(db.url);
      const { answered, open } = await fill(store);
      seen.clear();
      assert.equal((await store.messages.byDedupeKey(BOT, "tg:u2"))?.id, open);
      assert.equal((await store.messages.answerTo(answered))?.status, "sent");
      assert.equal((await store.balance.openReservation(open))?.message_id, open);
      assert.equal((await store.balance.openReservation(answered)) ?? null, null, "refunded: closed by its refund row (ref_id)");
      assert.deepEqual(
        (await store.balance.openReservationsOfBot(BOT)).map((r) => r.message_id),
        [open],
      );
      assert.equal(await store.messages.lastMessageMs(BOT), 3_000);
      assert.deepEqual(await store.messages.countByStatus(BOT, ["received", "failed"]), { received: 1, failed: 0 });
      assert.deepEqual(
        (await store.messages.selectIncoming({ bots: [BOT], statuses: ["received"], limit: 10 })).map((r) => r.id),
        [open],
      );
      assert.deepEqual(await store.messages.outgoingInStatus(BOT, ["pending"]).then((rs) => rs.length), 1);
      // The spam check's count: this bot's two incoming rows (written without a text hash here).
      assert.deepEqual(await store.messages.userActivity(BOT, "1", 0, { text: "t", sinceMs: 0 }), { recent: 2, duplicate: false });
      assert.deepEqual(await store.messages.receivedIds([BOT, "other"], 10), [{ id: open, bot: BOT }]);
    } finally {
      SQLite.prototype.prepare = prepare;
      await store?.close();
    }
    // Plans read on a connection of its own (the parameters' values do not change them).
    const file = db.url.slice("sqlite:".length);
    const conn = new SQLite(file, { readonly: true });
    try {
      const plans = new Map<string, string[]>();
      for (const text of seen) {
        if (!/^\s*select/i.test(text)) continue;
        const n = (text.match(/\?/g) ?? []).length;
        const rows = conn.prepare(`EXPLAIN QUERY PLAN ${text}`).all(...Array(n).fill(null)) as Array<{ detail: string }>;
        plans.set(
          text,
          rows.map((r) => r.detail),
        );
      }
      const planOf = (pattern: RegExp) => {
        const found = [...plans].filter(([text]) => pattern.test(text));
        assert.equal(found.length, 1, `one statement matches ${pattern}: ${found.map(([t]) => t).join(" | ")}`);
        return found[0]![1].join("; ");
      };
      assert.match(planOf(/"dedupe_key" = \?/), /USING INDEX messages_dedupe \(bot=\? AND dedupe_key=\?\)/);
      assert.match(planOf(/"reply_to_id" = \?/), /USING INDEX messages_reply_to \(reply_to_id=\?\)/);
      assert.match(planOf(/"user_id" = \?/), /USING INDEX messages_user \(bot=\? AND user_id=\? AND created_ms>\?\)/);
      assert.match(planOf(/"r"\."message_id" = \?/), /USING (COVERING )?INDEX ledger_ref \(ref_id=\?\)/);
      assert.match(planOf(/order by "id" desc limit \?/), /USING INDEX messages_bot_id \(bot=\?\)/);
      // The inbox sweep's ids: from the index alone.
      assert.match(planOf(/^select "id", "bot" from "messages"/), /USING COVERING INDEX messages_bot_status_id \(bot=\? AND status=\?\)/);
      for (const [text, details] of plans)
        for (const d of details) assert.doesNotMatch(d, /^SCAN (messages|balance_ledger|[a-z])\b/, `${text}\n  plan: ${details.join("; ")}`);
      const indexes = conn.prepare("select name, sql from sqlite_master where type = 'index' and sql is not null").all() as Array<{
        name: string;
        sql: string;
      }>;
      const byName = new Map(indexes.map((i) => [i.name, i.sql]));
      assert.equal(byName.has("messages_status"), false, "messages_status is gone");
      for (const [name, column] of [
        ["messages_reply_to", "reply_to_id"],
        ["messages_dedupe", "dedupe_key"],
        ["messages_user", "user_id"],
        ["ledger_ref", "ref_id"],
      ])
        assert.match(byName.get(name!) ?? "", new RegExp(`where "${column}" is not null$`, "i"), `${name} is partial`);
    } finally {
      conn.close();
      await db.drop();
    }
  });
});

describe("SQLite settings", () => {
  test("WAL with a checkpoint every WAL_CHECKPOINT_PAGES pages and the WAL cut back to 64 MiB", async () => {
    const db = await createTestDatabase("sqlite");
    const store = await openStore(db.url);
    try {
      const pragma = async (name: string) => Object.values((await sql.raw(`PRAGMA ${name}`).execute(store.database.db)).rows[0] as object)[0];
      assert.equal(await pragma("journal_mode"), "wal");
      assert.equal(await pragma("synchronous"), 1, "NORMAL");
      assert.equal(await pragma("wal_autocheckpoint"), WAL_CHECKPOINT_PAGES);
      assert.equal(WAL_CHECKPOINT_PAGES, 10_000);
      assert.equal(await pragma("journal_size_limit"), 64 * 1024 * 1024);
    } finally {
      await store.close();
      await db.drop();
    }
  });
});

for (const dialect of dialects()) {
  describe(`indexes (${dialect})`, () => {
    test("the unique keys still refuse a second row; the newest message ignores unsent proactive ones", async () => {
      const db = await createTestDatabase(dialect);
      const store = await openStore(db.url);
      try {
        const { answered } = await fill(store);
        await assert.rejects(row(store, { direction: "in", status: "received", created_ms: 4_000, dedupe_key: "tg:u1" }), /dedupe|UNIQUE|Duplicate/i);
        // Answers (no dedupe_key) never conflict with each other.
        await row(store, { direction: "out", status: "sent", created_ms: 4_000, reply_to_id: answered });
        const reservation = await store.balance.reserve("default", 100, 0, answered);
        const balance = (await store.balance.get("default"))!.balance;
        assert.notEqual(await store.balance.refund(reservation!), null);
        assert.equal(await store.balance.refund(reservation!), null, "a reservation is refunded once (ledger_ref refused the second)");
        assert.equal((await store.balance.get("default"))!.balance, balance + 100);
        assert.equal(await store.balance.ledgerSum("default"), balance + 100);
        assert.equal(await store.messages.lastMessageMs(BOT), 4_000);
        assert.equal(await store.messages.lastMessageMs("nobody"), null);
        if (dialect === "mysql") {
          const { rows } = await sql<{ n: number }>`select count(*) as n from information_schema.statistics
            where table_schema = database() and index_name = 'messages_status'`.execute(store.database.db);
          assert.equal(Number(rows[0]!.n), 0, "messages_status is gone");
        }
      } finally {
        await store.close();
        await db.drop();
      }
    });
  });
}
