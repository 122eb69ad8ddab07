import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { openStore } from "../../src/storage/index.js";
import { runBots } from "../support/cli.js";
import { createTestDatabase, dialects } from "../support/db.js";
import { Fixture } from "../support/fixture.js";

for (const dialect of dialects()) {
  describe(`bots balance through bin/bots.js (${dialect})`, () => {
    test("add, show (--json), history; replies left from the bots' cost", async () => {
      const fx = new Fixture();
      const db = await createTestDatabase(dialect);
      try {
        fx.write("prompts/p.md", "x");
        fx.bot("a", ["channel: tg", "prompt: prompts/p.md", "llm: { model: m, api_key: k }", "tg: { token: '1:x' }", "balance: { account: client-a, cost_per_reply: 2.5, stop_below: 10 }"].join("\n"));
        const env = { DATABASE_URL: db.url };
        let r = await runBots(["balance", "add", "500", "--account", "client-a", "--note", "invoice 42", "--yes"], { cwd: fx.root, env });
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /Added 500\.00 to client-a; balance 500\.00\./);
        r = await runBots(["balance", "add", "12,50", "--account", "client-a", "--yes"], { cwd: fx.root, env });
        assert.equal(r.code, 0, r.stderr);
        r = await runBots(["balance", "--json"], { cwd: fx.root, env });
        assert.equal(r.code, 0, r.stderr);
        const acc = (JSON.parse(r.stdout) as { accounts: Array<Record<string, unknown>> }).accounts[0]!;
        assert.equal(acc.account, "client-a");
        assert.equal(acc.balance, "512.50");
        assert.equal(acc.balance_hundredths, 51250);
        assert.equal(acc.replies_left, Math.floor((51250 - 1000) / 250));
        r = await runBots(["balance", "history", "--json", "--limit", "5"], { cwd: fx.root, env });
        const ledger = (JSON.parse(r.stdout) as { ledger: Array<Record<string, unknown>> }).ledger;
        assert.deepEqual(ledger.map((l) => [l.reason, l.delta, l.balance_after, l.note]), [["topup", "12.50", "512.50", null], ["topup", "500.00", "500.00", "invoice 42"]]);
        r = await runBots(["balance"], { cwd: fx.root, env });
        assert.match(r.stdout, /client-a\s+512\.50\s+201\s+topup \+12\.50/);
      } finally {
        await db.drop();
        fx.cleanup();
      }
    });

    test("every malformed amount is refused with exit 2 and nothing is written", async () => {
      const fx = new Fixture();
      const db = await createTestDatabase(dialect);
      try {
        const env = { DATABASE_URL: db.url };
        for (const bad of ["abc", "-5", "0", "1e3", "5.555", "1000000001", "12.", ""]) {
          const r = await runBots(["balance", "add", "--yes", "--", bad], { cwd: fx.root, env });
          assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
          assert.match(r.stderr, /^error: .*(amount|above)/m, bad);
          assert.match(r.stderr, /hint: /, bad);
        }
        const store = await openStore(db.url);
        try {
          assert.equal((await store.balance.list()).length, 0);
          assert.equal((await store.balance.history(undefined, 10)).length, 0);
        } finally {
          await store.close();
        }
      } finally {
        await db.drop();
        fx.cleanup();
      }
    });

    test("50 concurrent `bots balance add 1 --yes` processes add exactly 50.00", async () => {
      const fx = new Fixture();
      const db = await createTestDatabase(dialect);
      try {
        const env = { DATABASE_URL: db.url };
        // The first run creates the database; the rest race on the ledger.
        const results = await Promise.all(Array.from({ length: 50 }, () => runBots(["balance", "add", "1", "--yes"], { cwd: fx.root, env, timeoutMs: 120_000 })));
        assert.deepEqual(results.filter((r) => r.code !== 0).map((r) => r.stderr), []);
        const store = await openStore(db.url);
        try {
          assert.equal((await store.balance.get("default"))!.balance, 5000);
          assert.equal(await store.balance.ledgerSum("default"), 5000);
          const rows = await store.balance.history("default", 100);
          assert.equal(rows.length, 50);
          assert.deepEqual(rows.map((r) => r.balance_after).sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => (i + 1) * 100));
        } finally {
          await store.close();
        }
      } finally {
        await db.drop();
        fx.cleanup();
      }
    });
  });
}

describe("database unavailable", () => {
  test("a MySQL server that is down gives one clear line and exit 1", async () => {
    const fx = new Fixture();
    try {
      const r = await runBots(["balance", "--db", "mysql://bots:pw-secret@127.0.0.1:1/bots"], { cwd: fx.root });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^error: cannot reach database mysql:\/\/bots:\*\*\*@127\.0\.0\.1:1\/bots: .*ECONNREFUSED/m);
      assert.ok(!r.stderr.includes("pw-secret"));
      assert.ok(!/\n\s+at /.test(r.stderr), "no stack trace without --verbose");
    } finally {
      fx.cleanup();
    }
  });
});
