import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import SQLite from "better-sqlite3";
import { sql } from "kysely";
import { DatabaseError, isRetryableStorageError } from "../../src/storage/faults.js";
import type { QueryEvent } from "../../src/storage/observe.js";
import { openStore } from "../../src/storage/index.js";
import { createTestDatabase, dialects } from "../support/db.js";
import { startTcpProxy } from "../support/tcp-proxy.js";

/** Asserts a classified database error of `code` that the retry policy treats as "database away, try again". */
function assertUnavailable(error: unknown, code: string, driverCode: RegExp): true {
  assert.ok(error instanceof DatabaseError, `a DatabaseError, got ${(error as Error)?.constructor?.name}: ${(error as Error)?.message}`);
  assert.equal(error.code, code, `${error.driverCode}: ${error.message}`);
  assert.equal(error.kind, "unavailable");
  assert.match(error.driverCode, driverCode);
  assert.ok(isRetryableStorageError(error));
  return true;
}

describe("storage errors classified at the boundary (sqlite)", () => {
  test("a full disk: a transaction fails with DB_FULL (not 'cannot rollback'), reserves nothing, leaves no transaction open, and works again once space is freed", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "bots-full-"));
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", dir]);
    const file = path.join(dir, "bots.db");
    const store = await openStore(`sqlite:${file}`);
    const outcomes: QueryEvent[] = [];
    const off = store.database.observer.subscribe((e) => void (e.kind === "write" && outcomes.push(e)));
    try {
      await store.balance.topUp("acc", 10_000);
      try {
        writeFileSync(path.join(dir, "filler"), Buffer.alloc(4 << 20));
      } catch (error) {
        assert.equal((error as NodeJS.ErrnoException).code, "ENOSPC");
      }
      for (let i = 0; i < 3; i++) await assert.rejects(store.balance.reserve("acc", 100, 0, null), (e) => assertUnavailable(e, "DB_FULL", /^SQLITE_FULL/));
      await assert.rejects(
        store.messages.insertIncoming({
          bot: "b",
          channel: "tg",
          thread_key: "t",
          chat_id: "1",
          user_id: "1",
          user_name: null,
          text: "x",
          dedupe_key: "k",
          channel_message_id: null,
          meta: {},
          status: "received",
          created_ms: 1,
        }),
        (e) => assertUnavailable(e, "DB_FULL", /^SQLITE_FULL/),
      );
      assert.ok(
        outcomes.some((o) => !o.ok && /^SQLITE_FULL/.test(String((o.error as { code?: unknown })?.code))),
        "failed writes are reported to the health observer",
      );
      assert.equal((await store.balance.get("acc"))!.balance, 10_000, "reads still work; nothing reserved");
      rmSync(path.join(dir, "filler"));
      const r = await store.balance.reserve("acc", 100, 0, null);
      assert.ok(r);
      assert.ok(outcomes.at(-1)!.ok, "a write that works is reported ok");
      // Committed, not inside a transaction left open: another connection sees it.
      const other = new SQLite(file, { readonly: true });
      try {
        assert.equal((other.prepare("select balance from balance_accounts where account = 'acc'").get() as { balance: number }).balance, 9_900);
        assert.equal((other.prepare("select count(*) as n from balance_ledger where reason = 'reserve'").get() as { n: number }).n, 1);
      } finally {
        other.close();
      }
      assert.equal(await store.balance.ledgerSum("acc"), 9_900, "ledger = balance");
    } finally {
      off();
      await store.close();
      execFileSync("umount", [dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a read-only database (PRAGMA query_only): DB_READ_ONLY, retried; writable again afterwards", async () => {
    const db = await createTestDatabase("sqlite");
    const store = await openStore(db.url);
    try {
      await store.balance.topUp("acc", 500);
      await sql`PRAGMA query_only = ON`.execute(store.database.db);
      await assert.rejects(store.balance.topUp("acc", 500), (e) => assertUnavailable(e, "DB_READ_ONLY", /^SQLITE_READONLY/));
      await sql`PRAGMA query_only = OFF`.execute(store.database.db);
      await store.balance.topUp("acc", 500);
      assert.equal((await store.balance.get("acc"))!.balance, 1000);
      assert.equal(await store.balance.ledgerSum("acc"), 1000);
    } finally {
      await store.close();
      await db.drop();
    }
  });
});

for (const dialect of dialects().filter((d) => d === "mysql")) {
  describe(`storage errors classified at the boundary (${dialect})`, () => {
    test("the server unreachable (TCP proxy cut): queries and transactions fail with DB_UNREACHABLE; nothing half-written once it is back", async () => {
      const db = await createTestDatabase(dialect);
      const u = new URL(db.url);
      const proxy = await startTcpProxy(u.hostname, Number(u.port || 3306));
      u.host = `127.0.0.1:${proxy.port}`;
      const store = await openStore(u.toString());
      try {
        await store.balance.topUp("acc", 10_000);
        proxy.cut();
        await assert.rejects(store.balance.reserve("acc", 100, 0, null), (e) =>
          assertUnavailable(e, "DB_UNREACHABLE", /^(ECONNREFUSED|ECONNRESET|PROTOCOL_CONNECTION_LOST|EPIPE|ETIMEDOUT)$/),
        );
        await assert.rejects(store.balance.get("acc"), (e) =>
          assertUnavailable(e, "DB_UNREACHABLE", /^(ECONNREFUSED|ECONNRESET|PROTOCOL_CONNECTION_LOST|EPIPE|ETIMEDOUT)$/),
        );
        proxy.restore();
        assert.ok(await store.balance.reserve("acc", 100, 0, null));
        assert.equal((await store.balance.get("acc"))!.balance, 9_900);
        assert.equal(await store.balance.ledgerSum("acc"), 9_900);
      } finally {
        await store.close();
        await proxy.close();
        await db.drop();
      }
    });

    test("a read-only session (SET SESSION TRANSACTION READ ONLY): DB_READ_ONLY, retried; the transaction rolled back whole", async () => {
      const db = await createTestDatabase(dialect);
      // One connection, so the session setting applies to every statement of this store.
      const store = await openStore(db.url, { poolSize: 1 });
      try {
        await store.balance.topUp("acc", 500);
        await sql`SET SESSION TRANSACTION READ ONLY`.execute(store.database.db);
        await assert.rejects(store.balance.topUp("acc", 500), (e) => assertUnavailable(e, "DB_READ_ONLY", /^ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION$/));
        await sql`SET SESSION TRANSACTION READ WRITE`.execute(store.database.db);
        await store.balance.topUp("acc", 500);
        assert.equal((await store.balance.get("acc"))!.balance, 1000);
        assert.equal(await store.balance.ledgerSum("acc"), 1000);
      } finally {
        await store.close();
        await db.drop();
      }
    });
  });
}
