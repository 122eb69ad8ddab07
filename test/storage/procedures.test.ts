import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createConnection, type Connection } from "mysql2/promise";
import { sql } from "kysely";
import { FencedError } from "../../src/errors.js";
import { openStore, type Store } from "../../src/storage/index.js";
import type { NewOutgoing } from "../../src/storage/messages.js";
import type { OwnerFence } from "../../src/storage/owners.js";
import { answerProcedures } from "../../src/storage/procedures.js";
import { cli } from "../support/cli.js";
import { createTestDatabase, dialects, type TestDatabase } from "../support/db.js";

/** A fixed clock: both paths then write the same times. */
const NOW = 1_700_000_000_000;

async function incoming(s: Store, key: string, text = `hi ${key}`): Promise<number> {
  return (await s.messages.insertIncoming({
    bot: "x",
    channel: "tg",
    thread_key: `tg:${key}`,
    chat_id: key,
    user_id: key,
    user_name: "U",
    text,
    dedupe_key: key,
    channel_message_id: key,
    meta: { kind: "messages", target: {} },
    status: "delivering",
    created_ms: NOW,
  }))!;
}

function answer(id: number, key: string, text: string, extra: Partial<NewOutgoing> = {}): NewOutgoing {
  return {
    incoming: { id, bot: "x", channel: "tg", thread_key: `tg:${key}`, chat_id: key },
    text,
    channel_message_id: `m${key}`,
    model: "model-a",
    prompt_tokens: 11,
    completion_tokens: 22,
    cost: 300,
    latency_ms: 33,
    created_ms: NOW + 5,
    ...extra,
  };
}

/** What a call gave: its value, or the FencedError's bot and epoch. */
async function outcome<T>(fn: () => Promise<T>): Promise<T | { fenced: string; epoch: number }> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof FencedError) return { fenced: error.bot, epoch: error.epoch };
    throw error;
  }
}

/**
 * Operations the store's observer (src/storage/observe.ts) reports while `fn` runs: each
 * statement outside a transaction (a CALL is one), and a transaction's BEGIN and COMMIT (the
 * writes inside it are reported with the commit). So one for a CALL, two for a transaction.
 */
async function observed(s: Store, fn: () => Promise<unknown>): Promise<number> {
  let n = 0;
  const off = s.database.observer.subscribe(() => n++);
  try {
    await fn();
  } finally {
    off();
  }
  return n;
}

/**
 * Reservations and settlements through every outcome: paid, below the floor, unknown account,
 * amount 0, without a fence, settled with and without parts, fenced after a take-over (nothing
 * written), an owner that cannot pay (null, not fenced). Returns everything they returned and
 * wrote, for comparing the paths.
 */
async function scenario(s: Store): Promise<unknown[]> {
  const log: unknown[] = [];
  await s.owners.register("i1", "h", 1, ["x"], 60_000);
  const f1: OwnerFence = { bot: "x", owner: "i1", epoch: (await s.owners.claim("x", "i1"))! };
  await s.balance.topUp("acc", 1000);
  const a = await incoming(s, "1");
  const b = await incoming(s, "2");
  const c = await incoming(s, "3");

  const paid = await s.balance.reserve("acc", 300, 500, a, f1);
  assert.equal(paid?.balance_after, 700);
  log.push(paid);
  log.push(await s.balance.reserve("acc", 300, 500, b, f1), "below the floor");
  log.push(await s.balance.reserve("nobody", 1, 0, b, f1), "no such account");
  // Amount 0 at the same millisecond: the row does not change, yet it is found (mysql2's found rows).
  log.push(await s.balance.reserve("acc", 0, 0, b, f1));
  log.push(await s.balance.reserve("acc", 200, 0, b));
  const out1 = await s.messages.settle(answer(a, "1", "first answer"), f1);
  const out2 = await s.messages.settle(answer(b, "2", "second answer", { parts: 3, cost: null, model: null, prompt_tokens: null }));
  log.push(out1, out2, await s.messages.get(a), await s.messages.get(out1), await s.messages.get(b), await s.messages.get(out2));

  // i2 takes x over: i1's fence no longer holds.
  await s.owners.release("x", "i1", f1.epoch);
  await s.owners.register("i2", "h", 2, ["x"], 60_000);
  const f2: OwnerFence = { bot: "x", owner: "i2", epoch: (await s.owners.claim("x", "i2"))! };
  assert.equal(f2.epoch, f1.epoch + 1);
  const fenced = await outcome(() => s.balance.reserve("acc", 100, 0, c, f1));
  assert.deepEqual(fenced, { fenced: "x", epoch: f1.epoch });
  log.push(fenced);
  log.push(await outcome(() => s.balance.reserve("acc", 100_000, 0, c, f1)), "fenced and cannot pay: fenced");
  log.push(await outcome(() => s.messages.settle(answer(c, "3", "late answer"), f1)));
  log.push(await s.messages.get(c), await s.messages.answerTo(c), "the fenced settle stored nothing");
  log.push(await outcome(() => s.balance.reserve("acc", 100_000, 0, c, f2)), "an owner that cannot pay: null");
  const out3 = await s.messages.settle(answer(c, "3", "new owner's answer", { parts: 1 }), f2);
  log.push(out3, await s.messages.get(c), await s.messages.get(out3));
  // The same settle again (its commit's reply was lost): the answer stored first, nothing new.
  assert.equal(await s.messages.settle(answer(c, "3", "new owner's answer", { parts: 1 }), f2), out3);
  assert.equal(await outcome(() => s.messages.settle(answer(c, "3", "new owner's answer"), f1)), out3, "also with a fence that no longer holds");
  assert.equal(await s.messages.settle(answer(a, "1", "first answer")), out1, "and without a fence");
  const answers = await s.database.db.selectFrom("messages").select("id").where("reply_to_id", "in", [a, c]).orderBy("id").execute();
  assert.deepEqual(
    answers.map((r) => Number(r.id)),
    [out1, out3],
    "one answer stored for each",
  );
  // i1 sent d's answer, then was paused past its lease; i2's recovery made the row `unconfirmed`
  // (src/core/recovery.ts). i1's late settle records the confirmed send despite its fence.
  const d = await incoming(s, "4");
  assert.ok(await s.messages.setStatus(d, "unconfirmed", { from: ["delivering"], error: "cut off", cost: 300 }));
  const out4 = await s.messages.settle(answer(d, "4", "paused answer"), f1);
  const dRow = await s.messages.get(d);
  assert.equal(dRow?.status, "answered");
  assert.equal(dRow?.error, null);
  log.push(out4, dRow, await s.messages.get(out4));
  log.push(await s.messages.settle(answer(999, "9", "no such incoming row")), "without a fence, as before: the answer is stored");
  log.push(await outcome(() => s.messages.settle(answer(998, "8", "no such incoming row"), f2)), "with a fence: fenced");

  const balance = (await s.balance.get("acc"))!.balance;
  assert.equal(balance, 500);
  assert.equal(await s.balance.ledgerSum("acc"), balance);
  log.push(await s.balance.history(undefined, 100), await s.balance.list());
  return log;
}

/** A store on a new database whose answer procedures were dropped before it answered: the transaction path. */
async function withoutProcedures(db: TestDatabase): Promise<Store> {
  const s = await openStore(db.url, { now: () => NOW });
  await sql`DROP PROCEDURE bots_reserve`.execute(s.database.db);
  await sql`DROP PROCEDURE bots_settle`.execute(s.database.db);
  return s;
}

async function adminConnection(): Promise<Connection> {
  const u = new URL(process.env.MYSQL_URL!);
  return createConnection({ host: u.hostname, port: Number(u.port || 3306), user: decodeURIComponent(u.username), password: decodeURIComponent(u.password) });
}

describe("answer procedures (migration 0014): reserve and settle in one round trip on MySQL/MariaDB", () => {
  test("the same results on every path: SQLite, MariaDB's procedures, MariaDB's transactions (procedures dropped)", async () => {
    const runs: Array<{ path: string; log: unknown[] }> = [];
    for (const dialect of dialects()) {
      const db = await createTestDatabase(dialect);
      const s = await openStore(db.url, { now: () => NOW });
      try {
        runs.push({ path: dialect === "mysql" ? "procedures" : "sqlite", log: await scenario(s) });
        if (dialect === "mysql") {
          assert.ok(await answerProcedures(s.database.db).has("bots_reserve"));
          const id = await incoming(s, "rt");
          assert.equal(await observed(s, () => s.balance.reserve("acc", 1, 0, id)), 1, "a reserve is one statement: the CALL");
          assert.equal(await observed(s, () => s.messages.settle(answer(id, "rt", "ok"))), 1, "a settle is one statement: the CALL");
        }
      } finally {
        await s.close();
        await db.drop();
      }
      if (dialect !== "mysql") continue;
      const db2 = await createTestDatabase(dialect);
      const t = await withoutProcedures(db2);
      try {
        runs.push({ path: "transactions", log: await scenario(t) });
        assert.equal(await answerProcedures(t.database.db).has("bots_reserve"), false);
        const id = await incoming(t, "rt");
        assert.equal(await observed(t, () => t.balance.reserve("acc", 1, 0, id)), 2, "a transaction: BEGIN … COMMIT");
        assert.equal(await observed(t, () => t.messages.settle(answer(id, "rt", "ok"))), 2, "a transaction: BEGIN … COMMIT");
      } finally {
        await t.close();
        await db2.drop();
      }
    }
    for (const r of runs.slice(1)) assert.deepEqual(r.log, runs[0]!.log, `${r.path} differs from ${runs[0]!.path}`);
  });

  for (const dialect of dialects()) {
    test(`50 concurrent fenced reserves against a balance that pays 20: exactly 20 succeed, ledger sums to the balance (${dialect})`, async () => {
      const db = await createTestDatabase(dialect);
      // Two stores on MySQL: two pools, as two processes (SQLite: one connection per process).
      const a = await openStore(db.url);
      const b = dialect === "mysql" ? await openStore(db.url) : a;
      try {
        if (dialect === "mysql") for (const s of [a, b]) assert.ok(await answerProcedures(s.database.db).has("bots_reserve"), "the CALL path");
        await a.owners.register("i1", "h", 1, ["x"], 60_000);
        const fence: OwnerFence = { bot: "x", owner: "i1", epoch: (await a.owners.claim("x", "i1"))! };
        await a.balance.topUp("acc", 2000);
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).balance.reserve("acc", 100, 0, i + 1, fence)));
        const ok = results.filter((r) => r !== null);
        assert.equal(ok.length, 20);
        assert.deepEqual(
          ok.map((r) => r!.balance_after).sort((x, y) => x - y),
          Array.from({ length: 20 }, (_, i) => i * 100),
          "each saw a distinct balance, none below 0",
        );
        assert.equal((await a.balance.get("acc"))!.balance, 0);
        assert.equal(await a.balance.ledgerSum("acc"), 0);
        assert.equal((await a.balance.history("acc", 100)).filter((r) => r.reason === "reserve").length, 20);
      } finally {
        await a.close();
        if (b !== a) await b.close();
        await db.drop();
      }
    });
  }

  if (dialects().includes("mysql")) {
    test("Cyrillic and emoji pass through the procedures unchanged on a database whose default character set is latin1 (MariaDB)", async () => {
      const admin = await adminConnection();
      const name = `bots_t_l1_${process.pid}_${Date.now().toString(36)}`;
      await admin.query(`CREATE DATABASE \`${name}\` CHARACTER SET latin1 COLLATE latin1_swedish_ci`);
      const u = new URL(process.env.MYSQL_URL!);
      u.pathname = `/${name}`;
      const s = await openStore(u.toString());
      try {
        assert.ok(await answerProcedures(s.database.db).has("bots_settle"), "the CALL path");
        const account = "счёт-😀";
        await s.balance.topUp(account, 1000);
        const r = await s.balance.reserve(account, 250, 0, null);
        assert.equal(r?.balance_after, 750, "the account found by its Cyrillic and emoji name");
        const id = (await s.messages.insertIncoming({
          bot: "x",
          channel: "tg",
          thread_key: "tg:чат-1",
          chat_id: "1",
          user_id: "1",
          user_name: "Иван",
          text: "Привет! Сколько стоит? 🤔",
          dedupe_key: "1:1",
          channel_message_id: "1",
          meta: null,
          status: "delivering",
          created_ms: NOW,
        }))!;
        const text = "Здравствуйте! 👋 Стоимость — 500 ₽ 🎉\nЖдём вас: ёЁ «кавычки» 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 👨‍👩‍👧";
        const out = answer(id, "чат-1", text, { model: "модель-🤖", channel_message_id: "ид-7" });
        out.incoming.thread_key = "tg:чат-1";
        const answerId = await s.messages.settle(out);
        const row = await s.messages.get(answerId);
        assert.equal(row?.text, text);
        assert.equal(row?.model, "модель-🤖");
        assert.equal(row?.thread_key, "tg:чат-1");
        assert.equal(row?.channel_message_id, "ид-7");
        assert.equal((await s.messages.history("x", "tg:чат-1", id + 1, 10)).at(-1)?.text, text);
        const [[raw]] = (await admin.query(`SELECT HEX(text) AS h FROM \`${name}\`.messages WHERE id = ?`, [answerId])) as unknown as [[{ h: string }]];
        assert.equal(raw.h, Buffer.from(text, "utf8").toString("hex").toUpperCase(), "stored as UTF-8 bytes");
      } finally {
        await s.close();
        await admin.query(`DROP DATABASE IF EXISTS \`${name}\``);
        await admin.end();
      }
    });

    test("a CALL chosen as a deadlock victim is called again and reserves once (MariaDB)", async () => {
      const db = await createTestDatabase("mysql");
      const s = await openStore(db.url);
      const admin = await adminConnection();
      const dbName = new URL(db.url).pathname.slice(1);
      const other = await adminConnection();
      try {
        await s.owners.register("i1", "h", 1, ["x"], 60_000);
        const fence: OwnerFence = { bot: "x", owner: "i1", epoch: (await s.owners.claim("x", "i1"))! };
        await s.balance.topUp("acc", 1000);
        assert.ok(await answerProcedures(s.database.db).has("bots_reserve"));
        const errors: string[] = [];
        const off = s.database.observer.subscribe((e) => {
          if (!e.ok) errors.push(String((e.error as { code?: string }).code));
        });
        // Another transaction, heavier (InnoDB rolls back the lighter one of a deadlock), holds
        // the account row. The CALL's update reads x's owner row first (the fence: MariaDB
        // evaluates that subquery while it plans the update) and then waits for the account row.
        await other.query(`USE \`${dbName}\``);
        await other.query("START TRANSACTION");
        await other.query(
          `INSERT INTO cursors (bot, name, value, updated_ms) VALUES ${Array.from({ length: 200 }, (_, i) => `('x', 'c${i}', 'v', 1)`).join(", ")}`,
        );
        await other.query("UPDATE balance_accounts SET updated_ms = updated_ms + 1 WHERE account = 'acc'");
        const reserving = s.balance.reserve("acc", 100, 0, 1, fence);
        const waiting = async () => {
          const [rows] = (await admin.query(
            "SELECT COUNT(*) AS n FROM information_schema.INNODB_TRX t JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id WHERE t.trx_state = 'LOCK WAIT' AND p.DB = ? AND t.trx_query LIKE 'UPDATE balance_accounts%'",
            [dbName],
          )) as unknown as [[{ n: number }]];
          return Number(rows[0].n) > 0;
        };
        // INNODB_TRX is refreshed only when it was not read for 100 ms: poll more slowly than that.
        for (let i = 0; !(await waiting()); i++) {
          assert.ok(i < 40, "the CALL never waited for the account row");
          await new Promise((r) => setTimeout(r, 150));
        }
        // The other transaction now wants x's owner row, which the CALL holds shared: a deadlock, the CALL its victim.
        await other.query("UPDATE bot_owners SET changed_ms = changed_ms + 1 WHERE bot = 'x'");
        await other.query("COMMIT");
        const r = await reserving;
        off();
        assert.ok(errors.includes("ER_LOCK_DEADLOCK"), `the CALL met the deadlock: ${errors.join(", ")}`);
        assert.equal(r?.balance_after, 900, "reserved by the CALL made again");
        assert.equal((await s.balance.history("acc", 10)).filter((x) => x.reason === "reserve").length, 1, "once");
        assert.equal(await s.balance.ledgerSum("acc"), (await s.balance.get("acc"))!.balance);
      } finally {
        await other.end();
        await admin.end();
        await s.close();
        await db.drop();
      }
    });

    test("a procedure dropped under a running store: the call does the same as a transaction (MariaDB)", async () => {
      const db = await createTestDatabase("mysql");
      const s = await openStore(db.url);
      try {
        await s.balance.topUp("acc", 1000);
        assert.equal((await s.balance.reserve("acc", 100, 0, 1))?.balance_after, 900);
        const id = await incoming(s, "1");
        await sql`DROP PROCEDURE bots_reserve`.execute(s.database.db);
        await sql`DROP PROCEDURE bots_settle`.execute(s.database.db);
        assert.equal((await s.balance.reserve("acc", 100, 0, 2))?.balance_after, 800);
        const out = await s.messages.settle(answer(id, "1", "answer"));
        assert.equal((await s.messages.get(out))?.reply_to_id, id);
        assert.equal((await s.messages.get(id))?.status, "answered");
        assert.equal(await answerProcedures(s.database.db).has("bots_reserve"), false, "the catalogue read again");
        assert.equal(await s.balance.ledgerSum("acc"), 800);
      } finally {
        await s.close();
        await db.drop();
      }
    });

    test("a user without CREATE ROUTINE: the migration passes without the procedures, answers use transactions; `bots db migrate` creates them once allowed (MariaDB)", async () => {
      const db = await createTestDatabase("mysql");
      const admin = await adminConnection();
      const dbName = new URL(db.url).pathname.slice(1);
      const user = `bots_np_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
      await admin.query(`CREATE USER '${user}'@'%' IDENTIFIED BY 'pw-1'`);
      await admin.query(`GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP ON \`${dbName}\`.* TO '${user}'@'%'`);
      const limited = new URL(db.url);
      limited.username = user;
      limited.password = "pw-1";
      try {
        const s = await openStore(limited.toString(), { now: () => NOW });
        try {
          const [procs] = (await admin.query("SELECT routine_name FROM information_schema.routines WHERE routine_schema = ?", [dbName])) as unknown as [
            unknown[],
          ];
          assert.deepEqual(procs, [], "no procedures created");
          await s.balance.topUp("acc", 1000);
          const id = await incoming(s, "1");
          await s.balance.reserve("acc", 1, 0, id); // the first one also reads the server version
          assert.equal(await observed(s, () => s.balance.reserve("acc", 100, 0, id)), 2, "a transaction: BEGIN … COMMIT");
          assert.ok(await s.messages.settle(answer(id, "1", "ok")));
          assert.equal((await s.balance.get("acc"))!.balance, 899);
        } finally {
          await s.close();
        }
        const refused = await cli(["--db", limited.toString(), "--json", "db", "migrate"]);
        assert.equal(refused.code, 0, refused.stderr);
        assert.deepEqual(JSON.parse(refused.stdout).procedures_missing, ["bots_reserve", "bots_settle"]);

        await admin.query(`GRANT CREATE ROUTINE, ALTER ROUTINE, EXECUTE ON \`${dbName}\`.* TO '${user}'@'%'`);
        const made = await cli(["--db", limited.toString(), "db", "migrate"]);
        assert.equal(made.code, 0, made.stderr);
        assert.match(made.stdout, /Created stored procedures bots_reserve, bots_settle\./);
        const again = await openStore(limited.toString());
        try {
          assert.ok(await answerProcedures(again.database.db).has("bots_reserve"));
          assert.equal(await observed(again, () => again.balance.reserve("acc", 100, 0, null)), 1, "the CALL");
          assert.equal((await again.balance.get("acc"))!.balance, 799);
        } finally {
          await again.close();
        }
      } finally {
        await admin.query(`DROP USER IF EXISTS '${user}'@'%'`);
        await admin.end();
        await db.drop();
      }
    });
  }
});
