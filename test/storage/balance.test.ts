import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { formatCredits, parseAmount } from "../../src/storage/balance.js";
import { openStore } from "../../src/storage/index.js";
import { createTestDatabase, dialects } from "../support/db.js";

for (const dialect of dialects()) {
  describe(`balance ledger (${dialect})`, () => {
    test("200 concurrent reserves of 5.00 against 500.00: exactly 100 succeed, never below, ledger sums to balance", async () => {
      const db = await createTestDatabase(dialect);
      // On MySQL two stores = two connection pools, as two processes would have. On SQLite a
      // process has one connection (better-sqlite3 waits for locks synchronously, so a second
      // connection in the same process would block the first); processes sharing one file are
      // covered by the 50-process test in test/cli/balance.test.ts.
      const a = await openStore(db.url);
      const b = dialect === "mysql" ? await openStore(db.url) : a;
      try {
        await a.balance.topUp("default", 50000, "test");
        const results = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).balance.reserve("default", 500, 0, i + 1)));
        const ok = results.filter((r) => r !== null);
        assert.equal(ok.length, 100);
        assert.equal((await a.balance.get("default"))!.balance, 0);
        assert.equal(await a.balance.ledgerSum("default"), 0);
        assert.ok(ok.every((r) => r!.balance_after >= 0));
        assert.deepEqual(new Set(ok.map((r) => r!.balance_after)).size, 100, "every reservation saw a distinct balance");
        assert.equal(await a.balance.reserve("default", 1, 0, 999), null);
      } finally {
        await a.close();
        if (b !== a) await b.close();
        await db.drop();
      }
    });

    test("refund undoes a reservation exactly once; stop_below is a floor", async () => {
      const db = await createTestDatabase(dialect);
      const s = await openStore(db.url);
      try {
        await s.balance.topUp("acc", 1000);
        const r = (await s.balance.reserve("acc", 300, 500, 1))!;
        assert.equal(r.balance_after, 700);
        assert.equal(await s.balance.reserve("acc", 300, 500, 2), null, "would go below stop_below 5.00");
        assert.ok(await s.balance.refund(r, "model down"));
        assert.equal(await s.balance.refund(r, "again"), null);
        assert.equal((await s.balance.get("acc"))!.balance, 1000);
        assert.equal(await s.balance.ledgerSum("acc"), 1000);
        assert.equal(await s.balance.reserve("nobody", 1, 0, 3), null, "unknown account cannot pay");
        const hist = await s.balance.history("acc", 10);
        assert.deepEqual(
          hist.map((h) => [h.reason, h.delta, h.balance_after]),
          [
            ["refund", 300, 1000],
            ["reserve", -300, 700],
            ["topup", 1000, 1000],
          ],
        );
        await assert.rejects(s.balance.topUp("acc", 0), /positive/);
        await assert.rejects(s.balance.topUp("acc", 1.5), /positive/);
      } finally {
        await s.close();
        await db.drop();
      }
    });
  });
}

describe("amounts", () => {
  test("accepted forms are exact hundredths", () => {
    assert.equal(parseAmount("500"), 50000);
    assert.equal(parseAmount("12.5"), 1250);
    assert.equal(parseAmount("12,50"), 1250);
    assert.equal(parseAmount("0.01"), 1);
    assert.equal(parseAmount("1000000000"), 100_000_000_000);
    assert.equal(parseAmount(" 7 "), 700);
  });
  test("refused forms", () => {
    for (const bad of ["abc", "-5", "0", "0.00", "1e3", "5.555", "1000000000.01", "", "+5", "5.", ".5", "1 000", "0x10", "Infinity", "NaN"]) {
      assert.throws(() => parseAmount(bad), /amount|above/, bad);
    }
  });
  test("formatting", () => {
    assert.equal(formatCredits(50000), "500.00");
    assert.equal(formatCredits(5), "0.05");
    assert.equal(formatCredits(-1250), "-12.50");
  });
});
