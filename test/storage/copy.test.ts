import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Kysely } from "kysely";
import { openDatabase } from "../../src/storage/db.js";
import { openStore, type Store } from "../../src/storage/index.js";
import { cli } from "../support/cli.js";
import { createTestDatabase } from "../support/db.js";

async function seed(store: Store): Promise<void> {
  const at = Date.parse("2026-11-20T10:00:00Z");
  await store.balance.topUp("default", 20_000, "invoice 1");
  await store.balance.topUp("client-a", 2_550);
  for (let i = 1; i <= 30; i++) {
    const id = (await store.messages.insertIncoming({
      bot: "shop-tg",
      channel: "tg",
      thread_key: `tg:${i % 4}`,
      chat_id: String(i % 4),
      user_id: String(i % 4),
      user_name: `Имя ${i % 4} 🙂`,
      text: `вопрос ${i}`,
      dedupe_key: `${i % 4}:${i}`,
      channel_message_id: String(i),
      meta: { kind: "messages" },
      status: "received",
      created_ms: at + i * 1000,
    }))!;
    const r = (await store.balance.reserve("default", 500, 0, id))!;
    if (i % 5 === 0) {
      await store.balance.refund(r, "model failed");
      await store.messages.setStatus(id, "failed", { error: "LLM_HTTP: 500" });
    } else {
      await store.messages.settle({
        incoming: { id, bot: "shop-tg", channel: "tg", thread_key: `tg:${i % 4}`, chat_id: String(i % 4) },
        text: `ответ ${i}`,
        channel_message_id: String(1000 + i),
        model: "m",
        prompt_tokens: 10,
        completion_tokens: 5,
        cost: 500,
        latency_ms: 300,
        created_ms: at + i * 1000 + 500,
      });
    }
  }
  await store.posts.upsert({ bot: "club-vk", channel: "vk", owner_id: "-1", post_id: "7", text: "Приём заявок до 25 ноября", posted_ms: at });
  await store.cursors.set("shop-2gis", "branch:1", "2026-11-20T10:00:00Z");
  await store.leases.acquire("poll:shop-2gis", "host-1", 60_000);
  await store.leads.upsert({
    bot: "sales-tg",
    thread_key: "tg:9",
    chat_id: "9",
    user_id: "9",
    user_name: "Lead",
    name: "Иван",
    phone: "+79001234567",
    email: null,
    note: null,
    dialog: [],
    message_id: 1,
  });
}

/** Every row of every table (migration bookkeeping aside), ordered, numbers normalised. */
async function dump(url: string): Promise<Record<string, unknown[]>> {
  const d = await openDatabase(url);
  try {
    const db = d.db as unknown as Kysely<any>;
    const out: Record<string, unknown[]> = {};
    for (const t of (await db.introspection.getTables()).filter((t) => !t.name.startsWith("kysely_")).sort((a, b) => a.name.localeCompare(b.name))) {
      const cols = t.columns.map((c) => c.name).sort();
      const rows = (await db.selectFrom(t.name).select(cols).execute()) as Array<Record<string, unknown>>;
      out[t.name] = rows
        .map((r) =>
          Object.fromEntries(
            cols.map((c) => [
              c,
              r[c] === null || r[c] === undefined ? null : typeof r[c] === "bigint" || /^-?\d+$/.test(String(r[c])) ? Number(r[c]) : String(r[c]),
            ]),
          ),
        )
        .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
    }
    return out;
  } finally {
    await d.close();
  }
}

describe("bots db copy", () => {
  test("SQLite → MariaDB → SQLite: every table's rows equal, ids kept, the ledger still sums; a non-empty target is refused", {
    skip: !process.env.MYSQL_URL && "needs MYSQL_URL (MariaDB)",
  }, async () => {
    const sqlite = await createTestDatabase("sqlite");
    const maria = await createTestDatabase("mysql");
    const back = await createTestDatabase("sqlite");
    try {
      const store = await openStore(sqlite.url);
      await seed(store);
      await store.close();
      const source = await dump(sqlite.url);
      for (const t of ["messages", "balance_accounts", "balance_ledger", "posts", "cursors", "leases", "leads"])
        assert.ok(source[t]!.length > 0, `seeded ${t}`);

      const r = await cli(["--db", sqlite.url, "db", "copy", "--to", maria.url]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Copied \d+ rows in \d+ tables/);
      assert.deepEqual(await dump(maria.url), source);

      const target = await openStore(maria.url);
      try {
        for (const a of await target.balance.list())
          assert.equal(await target.balance.ledgerSum(a.account), a.balance, `ledger of ${a.account} sums to its balance`);
        assert.equal((await target.balance.get("default"))!.balance, 20_000 - 24 * 500);
        // The copy keeps ids, and new rows continue after them.
        const id = await target.messages.insertIncoming({
          bot: "shop-tg",
          channel: "tg",
          thread_key: "tg:1",
          chat_id: "1",
          user_id: "1",
          user_name: null,
          text: "after the move",
          dedupe_key: "new:1",
          channel_message_id: "x",
          meta: null,
          status: "received",
          created_ms: Date.now(),
        });
        assert.ok(id! > Math.max(...(source.messages as Array<{ id: number }>).map((m) => m.id)));
      } finally {
        await target.close();
      }

      const again = await cli(["--db", sqlite.url, "db", "copy", "--to", maria.url]);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /already has rows; nothing copied/);

      const home = await cli(["--db", maria.url, "db", "copy", "--to", back.url]);
      assert.equal(home.code, 0, home.stderr);
      assert.deepEqual(await dump(back.url), await dump(maria.url));
    } finally {
      await sqlite.drop();
      await maria.drop();
      await back.drop();
    }
  });
});
