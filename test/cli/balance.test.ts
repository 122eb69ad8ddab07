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
        fx.bot(
          "a",
          [
            "channel: tg",
            "prompt: prompts/p.md",
            "llm: { model: m, api_key: k }",
            "tg: { token: '1:x' }",
            "balance: { account: client-a, cost_per_reply: 2.5, stop_below: 10 }",
          ].join("\n"),
        );
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
        assert.deepEqual(
          ledger.map((l) => [l.reason, l.delta, l.balance_after, l.note]),
          [
            ["topup", "12.50", "512.50", null],
            ["topup", "500.00", "500.00", "invoice 42"],
          ],
        );
        r = await runBots(["balance"], { cwd: fx.root, env });
        assert.match(r.stdout, /client-a\s+512\.50\s+201\s+topup \+12\.50/);
      } finally {
        await db.drop();
        fx.cleanup();
      }
    });

    test("a top-up to an account no config names and no ledger has asks for --new-account, with a guess; nothing written", async () => {
      const fx = new Fixture();
      const db = await createTestDatabase(dialect);
      try {
        fx.write("prompts/p.md", "x");
        fx.bot(
          "a",
          ["channel: tg", "prompt: prompts/p.md", "llm: { model: m, api_key: k }", "tg: { token: '1:x' }", "balance: { account: default }"].join("\n"),
        );
        const env = { DATABASE_URL: db.url };
        const typo = await runBots(["balance", "add", "10", "--account", "defualt", "--yes"], { cwd: fx.root, env });
        assert.equal(typo.code, 2, typo.stderr);
        assert.match(typo.stderr, /account 'defualt' is new: no bot config names it and it has no ledger \(did you mean 'default'\?\)/);
        assert.match(typo.stderr, /hint: to open it, add --new-account; accounts: default/);
        const configured = await runBots(["balance", "add", "10", "--yes"], { cwd: fx.root, env });
        assert.equal(configured.code, 0, configured.stderr);
        // A file that does not validate in this shell (a variable not set) still names its account.
        fx.bot(
          "b",
          [
            "channel: tg",
            "prompt: prompts/p.md",
            "llm:",
            "  model: m",
            "  api_key: ${NOT_SET_HERE}",
            "tg: { token: '1:x' }",
            "balance: { account: client-c }",
          ].join("\n"),
        );
        assert.equal((await runBots(["balance", "add", "1", "--account", "client-c", "--yes"], { cwd: fx.root, env })).code, 0);
        const opened = await runBots(["balance", "add", "7", "--account", "client-b", "--yes", "--new-account"], { cwd: fx.root, env });
        assert.equal(opened.code, 0, opened.stderr);
        // client-b has a ledger now: no flag needed any more.
        const again = await runBots(["balance", "add", "1", "--account", "client-b", "--yes"], { cwd: fx.root, env });
        assert.equal(again.code, 0, again.stderr);
        const store = await openStore(db.url);
        try {
          assert.deepEqual(
            (await store.balance.list()).map((a) => [a.account, a.balance]),
            [
              ["client-b", 800],
              ["client-c", 100],
              ["default", 1000],
            ],
          );
        } finally {
          await store.close();
        }
      } finally {
        await db.drop();
        fx.cleanup();
      }
    });

    test("balance adjust writes a correcting ledger row: note required, never below zero, ledger sum = balance", async () => {
      const fx = new Fixture();
      const db = await createTestDatabase(dialect);
      try {
        const env = { DATABASE_URL: db.url };
        assert.equal((await runBots(["balance", "add", "10", "--account", "defualt", "--yes", "--new-account"], { cwd: fx.root, env })).code, 0);
        const noNote = await runBots(["balance", "adjust", "--", "-10", "--account", "defualt"], { cwd: fx.root, env });
        assert.equal(noNote.code, 2);
        assert.match(noNote.stderr, /--note is required/);
        const tooMuch = await runBots(["balance", "adjust", "--", "-10.01", "--account", "defualt", "--note", "typo"], { cwd: fx.root, env });
        assert.equal(tooMuch.code, 1);
        assert.match(tooMuch.stderr, /account 'defualt' holds 10\.00: taking 10\.01 would leave it below zero/);
        const unknown = await runBots(["balance", "adjust", "-5", "--account", "defualz", "--note", "x"], { cwd: fx.root, env });
        assert.equal(unknown.code, 2);
        assert.match(unknown.stderr, /account 'defualz' has no ledger: nothing to adjust \(did you mean 'defualt'\?\)/);
        const r = await runBots(["balance", "adjust", "--", "-10", "--account", "defualt", "--note", "typo: meant default", "--json"], { cwd: fx.root, env });
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(JSON.parse(r.stdout), { account: "defualt", adjusted: "-10.00", balance: "0.00", balance_hundredths: 0, ledger_id: 2 });
        const plus = await runBots(["balance", "adjust", "2,50", "--account", "defualt", "--note", "goodwill"], { cwd: fx.root, env });
        assert.equal(plus.code, 0, plus.stderr);
        assert.match(plus.stdout, /Adjusted defualt by \+2\.50; balance 2\.50\./);
        const store = await openStore(db.url);
        try {
          const rows = await store.balance.history("defualt", 10);
          assert.deepEqual(
            rows.map((x) => [x.reason, x.delta, x.balance_after, x.note]),
            [
              ["adjust", 250, 250, "goodwill"],
              ["adjust", -1000, 0, "typo: meant default"],
              ["topup", 1000, 1000, null],
            ],
          );
          assert.equal(await store.balance.ledgerSum("defualt"), (await store.balance.get("defualt"))!.balance);
        } finally {
          await store.close();
        }
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
        const results = await Promise.all(
          Array.from({ length: 50 }, () => runBots(["balance", "add", "1", "--yes", "--new-account"], { cwd: fx.root, env, timeoutMs: 120_000 })),
        );
        assert.deepEqual(
          results.filter((r) => r.code !== 0).map((r) => r.stderr),
          [],
        );
        const store = await openStore(db.url);
        try {
          assert.equal((await store.balance.get("default"))!.balance, 5000);
          assert.equal(await store.balance.ledgerSum("default"), 5000);
          const rows = await store.balance.history("default", 100);
          assert.equal(rows.length, 50);
          assert.deepEqual(
            rows.map((r) => r.balance_after).sort((a, b) => a - b),
            Array.from({ length: 50 }, (_, i) => (i + 1) * 100),
          );
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
