import assert from "node:assert/strict";
import path from "node:path";
import { describe, test } from "node:test";
import { sql } from "kysely";
import { createConnection } from "mysql2/promise";
import { DatabaseHealth } from "../../src/ops/db-health.js";
import { openStore, type Store } from "../../src/storage/index.js";
import type { QueryEvent } from "../../src/storage/observe.js";
import { createTestDatabase, dialects } from "../support/db.js";
import { eventually } from "../support/harness.js";
import { mountTmpfs } from "../support/tmpfs.js";

/** `kind:ok|fail` of each event, in order. */
const kinds = (events: QueryEvent[]) => events.map((e) => `${e.kind}:${e.ok ? "ok" : "fail"}`);

/** Runs `fn` with a store on `url`, its events, and a DatabaseHealth on them. */
async function withStore(
  url: string,
  fn: (s: { store: Store; events: QueryEvent[]; health: DatabaseHealth }) => Promise<void>,
  stallMs?: number,
): Promise<void> {
  const store = await openStore(url);
  const events: QueryEvent[] = [];
  const off = store.database.observer.subscribe((e) => events.push(e));
  const health = new DatabaseHealth({ observer: store.database.observer, stallMs }).start();
  try {
    await sql`create table obs_t (id integer primary key, v text)`.execute(store.database.db);
    events.length = 0;
    await fn({ store, events, health });
  } finally {
    health.stop();
    off();
    await store.close();
  }
}

for (const dialect of dialects()) {
  describe(`database observer (${dialect})`, () => {
    test("a write counts once its commit answers; reads and read-only commits are reads; a duplicate leaves the database up", async () => {
      const db = await createTestDatabase(dialect);
      try {
        await withStore(db.url, async ({ store, events, health }) => {
          const d = store.database.db;
          await sql`insert into obs_t (id, v) values (1, 'a')`.execute(d);
          assert.deepEqual(kinds(events), ["write:ok"]);
          events.length = 0;
          await d.transaction().execute(async (trx) => {
            await sql`insert into obs_t (id, v) values (2, 'b')`.execute(trx);
            await sql`update obs_t set v = 'c' where id = 1`.execute(trx);
          });
          assert.deepEqual(kinds(events), ["read:ok", "write:ok"], "begin, then one write at the commit");
          events.length = 0;
          await d.transaction().execute(async (trx) => sql`select v from obs_t where id = 1`.execute(trx));
          assert.deepEqual(kinds(events), ["read:ok", "read:ok", "read:ok"], "a transaction that only read commits as a read");
          events.length = 0;
          await assert.rejects(sql`insert into obs_t (id, v) values (1, 'dup')`.execute(d));
          assert.deepEqual(kinds(events), ["write:fail"]);
          assert.equal(health.state().up, true, "a duplicate means the database answered");
          assert.notEqual(health.state().lastWriteOkMs, null);
          assert.equal(store.database.observer.oldestPendingWriteMs(), undefined);
        });
      } finally {
        await db.drop();
      }
    });
  });
}

describe("database observer on a full file system (SQLite, tmpfs)", () => {
  test("the write that finds no space makes the database down with SQLITE_FULL; the next confirmed write brings it up", async () => {
    const fs = mountTmpfs(2);
    try {
      await withStore(`sqlite:${path.join(fs.dir, "t.db")}`, async ({ store, health }) => {
        const d = store.database.db;
        await sql`insert into obs_t (id, v) values (1, 'a')`.execute(d);
        assert.equal(health.state().up, true);
        fs.fill();
        const big = "x".repeat(64 * 1024);
        // What the caller gets may be the failed ROLLBACK after SQLITE_FULL (SQLite ended the transaction itself).
        await assert.rejects(d.transaction().execute(async (trx) => sql`insert into obs_t (id, v) values (2, ${big})`.execute(trx)));
        const down = health.state();
        assert.equal(down.up, false);
        assert.match(down.reason!, /^write failed \(SQLITE_FULL\): database or disk is full/);
        assert.notEqual(down.failingSinceMs, null);
        fs.free();
        await sql`insert into obs_t (id, v) values (3, 'c')`.execute(d);
        assert.deepEqual({ ...health.state(), lastWriteOkMs: 0 }, { up: true, reason: null, failingSinceMs: null, lastWriteOkMs: 0 });
      });
    } finally {
      fs.unmount();
    }
  });
});

for (const dialect of dialects().filter((d) => d === "mysql")) {
  describe(`database observer: a write that waits (${dialect})`, () => {
    test("an UPDATE waiting on a row lock past the stall limit makes the database down; it is up once the write is answered", async () => {
      const db = await createTestDatabase(dialect);
      const u = new URL(db.url);
      try {
        await withStore(
          db.url,
          async ({ store, health }) => {
            await sql`insert into obs_t (id, v) values (1, 'a')`.execute(store.database.db);
            const other = await createConnection({
              host: u.hostname,
              port: Number(u.port || 3306),
              user: decodeURIComponent(u.username),
              password: decodeURIComponent(u.password),
              database: u.pathname.slice(1),
            });
            try {
              await other.query("START TRANSACTION");
              await other.query("SELECT v FROM obs_t WHERE id = 1 FOR UPDATE");
              const waiting = sql`update obs_t set v = 'b' where id = 1`.execute(store.database.db);
              const down = await eventually(() => (health.state().up ? undefined : health.state()), 8000, "stalled write reported");
              assert.match(down!.reason!, /^a write has waited \d+ s for the database$/);
              await other.query("COMMIT");
              await waiting;
              assert.equal(health.state().up, true);
            } finally {
              await other.end();
            }
          },
          300,
        );
      } finally {
        await db.drop();
      }
    });
  });
}
