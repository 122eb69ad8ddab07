import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { openStore, type Store } from "../../src/storage/index.js";
import { createTestDatabase, dialects } from "../support/db.js";

async function withStores(dialect: "sqlite" | "mysql", n: number, fn: (stores: Store[], clock: { t: number }) => Promise<void>): Promise<void> {
  const db = await createTestDatabase(dialect);
  const clock = { t: 1_000_000 };
  const stores: Store[] = [];
  try {
    // Separate connections (pools) per store, as separate processes would have.
    for (let i = 0; i < n; i++) stores.push(await openStore(db.url, { now: () => clock.t }));
    await fn(stores, clock);
  } finally {
    for (const s of stores) await s.close();
    await db.drop();
  }
}

for (const dialect of dialects()) {
  describe(`leases and cursors (${dialect})`, () => {
    test("a lease is held until it expires or is released; renew extends it; only the holder renews or releases", async () => {
      await withStores(dialect, 1, async ([s], clock) => {
        const L = s!.leases;
        assert.equal(await L.acquire("poll:2gis:a", "h1", 1000), true);
        assert.deepEqual(await L.get("poll:2gis:a"), { name: "poll:2gis:a", holder: "h1", expires_ms: 1_001_000 });
        assert.equal(await L.acquire("poll:2gis:a", "h2", 1000), false, "held by h1");
        assert.equal(await L.acquire("poll:2gis:a", "h1", 1000), true, "re-entrant for its holder");
        assert.equal(await L.acquire("poll:2gis:b", "h2", 1000), true, "other names are independent");
        clock.t += 900;
        assert.equal(await L.renew("poll:2gis:a", "h1", 1000), true);
        assert.equal(await L.renew("poll:2gis:a", "h2", 1000), false);
        clock.t += 900;
        assert.equal(await L.acquire("poll:2gis:a", "h2", 1000), false, "renewed: not expired yet");
        clock.t += 200;
        assert.equal(await L.acquire("poll:2gis:a", "h2", 1000), true, "expired: taken over");
        assert.equal(await L.renew("poll:2gis:a", "h1", 1000), false, "the old holder lost it");
        await L.release("poll:2gis:a", "h1");
        assert.equal((await L.get("poll:2gis:a"))?.holder, "h2", "release by a non-holder does nothing");
        await L.release("poll:2gis:a", "h2");
        assert.equal(await L.get("poll:2gis:a"), undefined);
        assert.equal(await L.acquire("poll:2gis:a", "h3", 1000), true);
      });
    });

    test("many holders racing for one lease (free, then expired): exactly one wins each time", async () => {
      await withStores(dialect, 4, async (stores, clock) => {
        for (let round = 0; round < 5; round++) {
          const wins = await Promise.all(stores.flatMap((s, i) => [0, 1, 2].map((j) => s.leases.acquire("race", `r${round}-h${i}-${j}`, 1000))));
          assert.equal(wins.filter(Boolean).length, 1, `round ${round}: ${JSON.stringify(wins)}`);
          clock.t += 1001; // let it expire for the next round
        }
      });
    });

    test("cursors are stored per bot and name, and overwritten", async () => {
      await withStores(dialect, 2, async ([a, b]) => {
        assert.equal(await a!.cursors.get("bot", "2gis:branch:1"), undefined);
        await a!.cursors.set("bot", "2gis:branch:1", "2025-01-01T00:00:00.000Z");
        await a!.cursors.set("bot", "2gis:branch:1", "2025-01-01T00:00:00.000Z"); // unchanged value
        await a!.cursors.set("bot", "2gis:branch:2", "x");
        await a!.cursors.set("other", "2gis:branch:1", "y");
        await Promise.all([a!.cursors.set("bot", "new", "1"), b!.cursors.set("bot", "new", "2")]);
        await b!.cursors.set("bot", "2gis:branch:1", "2025-02-01T00:00:00.000Z");
        assert.equal(await a!.cursors.get("bot", "2gis:branch:1"), "2025-02-01T00:00:00.000Z");
        assert.equal(await a!.cursors.get("other", "2gis:branch:1"), "y");
        assert.ok(["1", "2"].includes((await a!.cursors.get("bot", "new"))!));
        assert.deepEqual(
          (await a!.cursors.list("bot")).map((c) => c.name),
          ["2gis:branch:1", "2gis:branch:2", "new"],
        );
      });
    });
  });
}
