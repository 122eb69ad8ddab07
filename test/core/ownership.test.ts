import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import pino from "pino";
import { Ownership, placement } from "../../src/core/ownership.js";
import { openStore, type Store } from "../../src/storage/index.js";
import { createTestDatabase, dialects } from "../support/db.js";

const TTL = 800;
const BOTS = ["b1", "b2", "b3", "b4", "b5", "b6"];

interface Inst {
  o: Ownership;
  store: Store;
  events: string[];
}

async function withDb(dialect: "sqlite" | "mysql", fn: (make: (id: string, bots?: string[], rebalance?: boolean) => Promise<Inst>) => Promise<void>): Promise<void> {
  const db = await createTestDatabase(dialect);
  const made: Inst[] = [];
  try {
    await fn(async (id, bots = BOTS, rebalance = true) => {
      // One store (pool) per instance, as separate processes have.
      const store = await openStore(db.url);
      const events: string[] = [];
      const o = new Ownership({
        store,
        id,
        bots,
        logger: pino({ level: "silent" }),
        ttlMs: TTL,
        // Each its own host, as the instances share this test's pid.
        host: `host-${id}`,
        intervalMs: 0,
        rebalance,
        onAcquire: async (bot, epoch) => void events.push(`+${bot}@${epoch}`),
        onLose: async (bot, reason) => void events.push(`-${bot}:${reason.split(" ")[0]}`),
      });
      const inst = { o, store, events };
      made.push(inst);
      return inst;
    });
  } finally {
    for (const m of made) await m.store.close();
    await db.drop();
  }
}

async function rounds(insts: Inst[], n: number): Promise<void> {
  for (let i = 0; i < n; i++) for (const x of insts) await x.o.tick();
}

/** Owner of each bot from the database, checked against each instance's own view: exactly one owner. */
async function ownersOf(insts: Inst[]): Promise<Map<string, string>> {
  const rows = await insts[0]!.store.owners.owners();
  const out = new Map<string, string>();
  for (const r of rows) {
    const holders = insts.filter((x) => x.o.epochOf(r.bot) !== undefined);
    assert.ok(holders.length <= 1, `${r.bot} believed owned by ${holders.length} instances`);
    if (r.owner) {
      assert.equal(holders[0]?.o.epochOf(r.bot), r.epoch, `${r.bot}: the owner's epoch matches the row`);
      out.set(r.bot, r.owner);
    }
  }
  return out;
}

function countBy(m: Map<string, string>): Record<string, number> {
  const c: Record<string, number> = {};
  for (const v of m.values()) c[v] = (c[v] ?? 0) + 1;
  return c;
}

test("placement: fair share, orphans claimed, one hand-over to an instance two behind", () => {
  const live = (id: string, bots = BOTS) => ({ id, host: "h", pid: 1, bots, started_ms: 0, heartbeat_ms: 0, age_ms: 0 });
  const own = (bot: string, owner: string | null) => ({ bot, owner, epoch: 1, changed_ms: 0 });
  // Alone: takes everything.
  assert.deepEqual(placement("a", BOTS, [live("a")], []).claim, BOTS);
  // Two live, nothing owned: fair share 3.
  assert.deepEqual(placement("a", BOTS, [live("a"), live("b")], []).claim, ["b1", "b2", "b3"]);
  // b owns 6, a none: b hands one over, a claims nothing owned by a live instance.
  const all = BOTS.map((b) => own(b, "b"));
  assert.equal(placement("b", BOTS, [live("a"), live("b")], all).handOver, "b1");
  assert.deepEqual(placement("a", BOTS, [live("a"), live("b")], all).claim, []);
  // 4 vs 3 of 7: settled, nothing moves.
  const seven = [...BOTS, "b7"];
  const rows = seven.map((b, i) => own(b, i < 4 ? "a" : "b"));
  assert.equal(placement("a", seven, [live("a", seven), live("b", seven)], rows).handOver, undefined);
  // An orphan only b may own is claimed by b even above its share.
  assert.deepEqual(placement("b", ["x"], [live("a", BOTS), live("b", ["x"])], BOTS.map((b) => own(b, "a"))).claim, ["x"]);
  // A bot owned by a dead (not live) instance is an orphan.
  assert.deepEqual(placement("a", ["b1"], [live("a", ["b1"])], [own("b1", "dead")]).claim, ["b1"]);
});

for (const dialect of dialects()) {
  describe(`ownership (${dialect})`, () => {
    test("three instances settle on two bots each, each bot owned once; a clean stop hands its bots over at once", async () => {
      await withDb(dialect, async (make) => {
        const xs = [await make("i1"), await make("i2"), await make("i3")];
        for (const x of xs) await x.o.start();
        await rounds(xs, 8);
        const owners = await ownersOf(xs);
        assert.equal(owners.size, 6);
        assert.deepEqual(Object.values(countBy(owners)).sort(), [2, 2, 2]);
        await xs[2]!.o.stop();
        await rounds(xs.slice(0, 2), 4);
        const after = await ownersOf(xs.slice(0, 2));
        assert.equal(after.size, 6);
        assert.deepEqual(Object.values(countBy(after)).sort(), [3, 3]);
        assert.ok(xs[2]!.events.filter((e) => e.endsWith(":shutting")).length === 2, xs[2]!.events.join(" "));
        assert.equal((await xs[0]!.store.owners.instances()).length, 2, "the stopped instance's row is removed");
      });
    });

    test("a silent instance (kill -9 or paused) loses its bots after the TTL on the database clock; when it wakes it notices, and rejoins", async () => {
      await withDb(dialect, async (make) => {
        const a = await make("a");
        const b = await make("b");
        await a.o.start();
        await b.o.start();
        await rounds([a, b], 6);
        const aBots = [...a.o.ownedBots().keys()];
        assert.equal(aBots.length, 3);
        // a stops beating; before the TTL nothing moves.
        await rounds([b], 1);
        assert.equal(b.o.ownedBots().size, 3);
        await sleep(TTL + 200);
        await rounds([b], 1);
        assert.equal(b.o.ownedBots().size, 6, "b took a's bots");
        for (const bot of aBots) assert.equal(b.o.epochOf(bot), 2, "epoch raised at the change of owner");
        // a's fenced view: it still thinks it owns them until its next round.
        for (const bot of aBots) assert.equal(await a.store.owners.holds(bot, "a", a.o.epochOf(bot)!), false);
        await a.o.tick();
        assert.equal(a.o.ownedBots().size, 0, "a noticed within one round");
        assert.deepEqual(a.events.filter((e) => e.endsWith(":taken")).sort(), aBots.map((x) => `-${x}:taken`).sort());
        // It rejoins: bots move back one at a time until 3/3.
        await rounds([a, b], 10);
        const owners = await ownersOf([a, b]);
        assert.deepEqual(Object.values(countBy(owners)).sort(), [3, 3]);
      });
    });

    test("selection and pins: an instance owns only the bots it may; without rebalance a second instance owns nothing until the first dies", async () => {
      await withDb(dialect, async (make) => {
        const a = await make("a", ["b1", "b2"], false);
        const b = await make("b", ["b1", "b2", "b3"], false);
        await a.o.start();
        await b.o.start();
        await rounds([a, b], 4);
        assert.deepEqual([...a.o.ownedBots().keys()].sort(), ["b1", "b2"]);
        assert.deepEqual([...b.o.ownedBots().keys()].sort(), ["b3"]);
        await sleep(TTL + 200);
        await rounds([b], 1);
        assert.deepEqual([...b.o.ownedBots().keys()].sort(), ["b1", "b2", "b3"]);
      });
    });

    test("fencing: a status change carrying an old epoch writes nothing once another instance took the bot", async () => {
      await withDb(dialect, async (make) => {
        const a = await make("a", ["x"]);
        const s = a.store;
        await s.owners.register("a", "h1", 1, ["x"]);
        const ea = (await s.owners.claim("x", "a", TTL))!;
        const id = (await s.messages.insertIncoming({ bot: "x", channel: "tg", thread_key: "tg:1", chat_id: "1", user_id: "1", user_name: "U", text: "hi", dedupe_key: "1:1", channel_message_id: "1", meta: { kind: "messages", target: {} }, status: "received", created_ms: Date.now() }))!;
        assert.equal(await s.messages.setStatus(id, "failed", { from: ["received"], fence: { bot: "x", owner: "a", epoch: ea } }), true, "owner at its epoch writes");
        // a goes silent; b takes x over after the TTL.
        await s.owners.register("b", "h2", 2, ["x"]);
        await sleep(TTL + 200);
        await s.owners.heartbeat("b");
        const eb = await s.owners.claim("x", "b", TTL);
        assert.equal(eb, ea + 1);
        assert.equal(await s.messages.setStatus(id, "delivering", { from: ["failed"], fence: { bot: "x", owner: "a", epoch: ea } }), false, "the old owner's write is refused");
        assert.equal((await s.messages.get(id))?.status, "failed");
        assert.equal(await s.messages.setStatus(id, "delivering", { from: ["failed"], fence: { bot: "x", owner: "b", epoch: eb! } }), true);
      });
    });

    test("two instances claiming the same orphan at once: one wins", async () => {
      await withDb(dialect, async (make) => {
        const a = await make("a", ["x"]);
        const b = await make("b", ["x"]);
        await a.store.owners.register("a", "h", 1, ["x"]);
        await b.store.owners.register("b", "h", 2, ["x"]);
        const [ea, eb] = await Promise.all([a.store.owners.claim("x", "a", TTL), b.store.owners.claim("x", "b", TTL)]);
        assert.equal([ea, eb].filter((e) => e !== undefined).length, 1);
        assert.equal((await a.store.owners.owner("x"))?.epoch, 1);
      });
    });
  });
}
