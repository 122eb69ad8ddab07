import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import { sql } from "kysely";
import pino from "pino";
import { Ownership, placement } from "../../src/core/ownership.js";
import { FencedError } from "../../src/errors.js";
import { IDLE_TRANSACTION_S } from "../../src/storage/db.js";
import { fenceHolds } from "../../src/storage/owners.js";
import { openStore, type Store } from "../../src/storage/index.js";
import { createTestDatabase, dialects } from "../support/db.js";
import { eventually } from "../support/harness.js";

const TTL = 800;
const BOTS = ["b1", "b2", "b3", "b4", "b5", "b6"];

interface Inst {
  o: Ownership;
  store: Store;
  events: string[];
}

async function withDb(
  dialect: "sqlite" | "mysql",
  fn: (make: (id: string, bots?: string[], rebalance?: boolean, acquireMs?: number) => Promise<Inst>) => Promise<void>,
): Promise<void> {
  const db = await createTestDatabase(dialect);
  const made: Inst[] = [];
  try {
    await fn(async (id, bots = BOTS, rebalance = true, acquireMs = 0) => {
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
        onAcquire: async (bot, epoch) => {
          events.push(`+${bot}@${epoch}`);
          if (acquireMs) await sleep(acquireMs);
        },
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
  const live = (id: string, bots = BOTS) => ({ id, host: "h", pid: 1, bots, started_ms: 0, heartbeat_ms: 0, age_ms: 0, ttl_ms: TTL });
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
  assert.deepEqual(
    placement(
      "b",
      ["x"],
      [live("a", BOTS), live("b", ["x"])],
      BOTS.map((b) => own(b, "a")),
    ).claim,
    ["x"],
  );
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

    test("bots are started several at once; a stop in the middle of a long first round takes nothing more and leaves no bot owned", async () => {
      await withDb(dialect, async (make) => {
        const many = Array.from({ length: 20 }, (_, i) => `m${String(i).padStart(2, "0")}`);
        const a = await make("a", many, true, 300);
        const starting = a.o.start();
        while (a.events.length === 0) await sleep(10);
        await sleep(50);
        assert.ok(a.events.length > 1 && a.events.length <= 8, `several started at once, at most 8: ${a.events.join(" ")}`);
        await a.o.stop();
        await starting;
        const started = a.events.filter((e) => e.startsWith("+")).length;
        assert.ok(started < many.length, `the stop ended the round early (${started} of ${many.length} started)`);
        assert.equal(a.events.filter((e) => e.endsWith(":shutting")).length, started, "each started bot stopped");
        const rows = await a.store.owners.owners();
        assert.deepEqual(
          rows.filter((r) => r.owner !== null),
          [],
          "nothing left owned by the stopped instance",
        );
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

    test("cut off from the database past its lease, an instance stops its bots by itself; back, it takes them up again with a new epoch", async () => {
      await withDb(dialect, async (make) => {
        const a = await make("a", ["b1", "b2"]);
        await a.o.start();
        assert.equal(a.o.ownedBots().size, 2);
        // The database becomes unreachable for this instance only (its heartbeat cannot be written).
        const beat = a.store.owners.heartbeat.bind(a.store.owners);
        a.store.owners.heartbeat = async () => Promise.reject(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }));
        await a.o.tick();
        assert.equal(a.o.ownedBots().size, 2, "within the lease it keeps its bots");
        await sleep(TTL + 100);
        await a.o.tick();
        assert.equal(a.o.ownedBots().size, 0, "past the lease it stopped them");
        assert.deepEqual(a.events.filter((e) => e.startsWith("-")).sort(), ["-b1:database", "-b2:database"]);
        a.store.owners.heartbeat = beat;
        await sleep(TTL + 100);
        await a.o.tick();
        assert.equal(a.o.ownedBots().size, 2, "alone again, it takes both back");
        assert.deepEqual([...a.o.ownedBots().values()], [2, 2], "with a new epoch each: what the stopped run writes late is fenced");
        // Claimed and started several at once: in no particular order within a round.
        const starts = a.events.filter((e) => e.startsWith("+"));
        assert.deepEqual(
          [starts.slice(0, 2).sort(), starts.slice(2).sort()],
          [
            ["+b1@1", "+b2@1"],
            ["+b1@2", "+b2@2"],
          ],
          "started (recovered) again",
        );
      });
    });

    test("bots stopped past the lease drain beside the heartbeat: an answer in the drain that waits for a fresh lease gets it once the database is back", async () => {
      const db = await createTestDatabase(dialect);
      const store = await openStore(db.url);
      // Each stop drains like the runner's: an answer in it waits for a fresh lease (Pipeline
      // leaseFresh) to send, for at most 8 TTLs.
      const drains: Array<Promise<"fresh" | "gave up">> = [];
      const o: Ownership = new Ownership({
        store,
        id: "a",
        bots: ["b1", "b2", "b3"],
        logger: pino({ level: "silent" }),
        ttlMs: TTL,
        host: "host-a",
        intervalMs: TTL / 4,
        onAcquire: async () => undefined,
        onLose: (_bot, reason) => {
          if (!/past the lease/.test(reason)) return Promise.resolve();
          const drain = (async () => {
            for (const until = Date.now() + 8 * TTL; Date.now() < until; await sleep(20)) if (o.leaseFresh()) return "fresh" as const;
            return "gave up" as const;
          })();
          drains.push(drain);
          return drain.then(() => undefined);
        },
      });
      const beat = store.owners.heartbeat.bind(store.owners);
      try {
        await o.start();
        assert.equal(o.ownedBots().size, 3);
        store.owners.heartbeat = async () => Promise.reject(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }));
        // Past the lease, with rounds and lone heartbeats failing for a while: all three stopped.
        await eventually(() => drains.length === 3, 10 * TTL, "all three bots stopped");
        await sleep(TTL);
        store.owners.heartbeat = beat;
        assert.deepEqual(
          await Promise.all(drains),
          ["fresh", "fresh", "fresh"],
          "heartbeats went on during the drains, so each waiting answer saw a fresh lease",
        );
      } finally {
        await o.stop();
        await store.close();
        await db.drop();
      }
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
        await s.owners.register("a", "h1", 1, ["x"], TTL);
        const ea = (await s.owners.claim("x", "a"))!;
        const id = (await s.messages.insertIncoming({
          bot: "x",
          channel: "tg",
          thread_key: "tg:1",
          chat_id: "1",
          user_id: "1",
          user_name: "U",
          text: "hi",
          dedupe_key: "1:1",
          channel_message_id: "1",
          meta: { kind: "messages", target: {} },
          status: "received",
          created_ms: Date.now(),
        }))!;
        assert.equal(
          await s.messages.setStatus(id, "failed", { from: ["received"], fence: { bot: "x", owner: "a", epoch: ea } }),
          true,
          "owner at its epoch writes",
        );
        // a goes silent; b takes x over after the TTL.
        await s.owners.register("b", "h2", 2, ["x"], TTL);
        await sleep(TTL + 200);
        await s.owners.heartbeat("b");
        const eb = await s.owners.claim("x", "b");
        assert.equal(eb, ea + 1);
        assert.equal(
          await s.messages.setStatus(id, "delivering", { from: ["failed"], fence: { bot: "x", owner: "a", epoch: ea } }),
          false,
          "the old owner's write is refused",
        );
        assert.equal((await s.messages.get(id))?.status, "failed");
        assert.equal(await s.messages.setStatus(id, "delivering", { from: ["failed"], fence: { bot: "x", owner: "b", epoch: eb! } }), true);
      });
    });

    test("fencing: reserve, refund and settle carrying an old epoch throw FencedError and write nothing; the owner's go through", async () => {
      await withDb(dialect, async (make) => {
        const s = (await make("a", ["x"])).store;
        await s.owners.register("a", "h1", 1, ["x"], TTL);
        const old = { bot: "x", owner: "a", epoch: (await s.owners.claim("x", "a"))! };
        await s.balance.topUp("acc", 10_000);
        const id = (await s.messages.insertIncoming({
          bot: "x",
          channel: "tg",
          thread_key: "tg:1",
          chat_id: "1",
          user_id: "1",
          user_name: "U",
          text: "hi",
          dedupe_key: "1:1",
          channel_message_id: "1",
          meta: { kind: "messages", target: {} },
          status: "received",
          created_ms: Date.now(),
        }))!;
        const held = (await s.balance.reserve("acc", 500, 0, id, old))!;
        assert.equal(held.balance_after, 9_500, "the owner reserves");
        assert.equal(await s.messages.setStatus(id, "delivering", { from: ["received"], fence: old }), true);
        // b takes x over after a's heartbeat is older than the TTL.
        await s.owners.register("b", "h2", 2, ["x"], TTL);
        await sleep(TTL + 200);
        await s.owners.heartbeat("b");
        const now = { bot: "x", owner: "b", epoch: (await s.owners.claim("x", "b"))! };
        const ledger = async () => (await s.balance.history("acc", 100)).length;
        const before = { balance: (await s.balance.get("acc"))!.balance, rows: await ledger() };
        await assert.rejects(
          () => s.balance.reserve("acc", 500, 0, id, old),
          (e: unknown) => e instanceof FencedError && e.code === "FENCED",
        );
        await assert.rejects(() => s.balance.refund(held, "late", old), FencedError);
        const out = {
          incoming: { id, bot: "x", channel: "tg", thread_key: "tg:1", chat_id: "1" },
          text: "late answer",
          channel_message_id: "9",
          model: "m",
          prompt_tokens: 1,
          completion_tokens: 1,
          cost: 500,
          latency_ms: 1,
          created_ms: Date.now(),
        };
        await assert.rejects(() => s.messages.settle(out, old), FencedError);
        assert.deepEqual(
          { balance: (await s.balance.get("acc"))!.balance, rows: await ledger() },
          before,
          "no ledger row and no balance change from the old owner",
        );
        assert.equal((await s.messages.get(id))?.status, "delivering", "the old owner's settle stored nothing");
        assert.equal(await s.messages.answerTo(id), undefined);
        // A reservation the old owner could not refund is the new owner's to give back (its recovery does).
        assert.ok(await s.balance.refund(held, "recovery", now));
        assert.equal((await s.balance.get("acc"))!.balance, 10_000);
        assert.equal(await s.balance.reserve("acc", 20_000, 0, id, now), null, "an owner that cannot pay gets null, not FencedError");
        assert.ok(await s.messages.settle(out, now));
        assert.equal((await s.messages.get(id))?.status, "answered");
      });
    });

    if (dialect === "mysql") {
      test("a transaction left open by a paused process is ended by the server, so its locks do not block a take-over (MySQL/MariaDB)", async () => {
        await withDb(dialect, async (make) => {
          const a = await make("a", ["x"]);
          const b = await make("b", ["x"]);
          await a.store.owners.register("a", "h1", 1, ["x"], TTL);
          const ea = (await a.store.owners.claim("x", "a"))!;
          await a.store.balance.topUp("acc", 10_000);
          // a reserves under its fence and then stops between statements (as a SIGSTOP would):
          // it holds a lock on the account row and a shared lock on x's owner row.
          let paused!: () => void;
          const resume = new Promise<void>((r) => (paused = r));
          const inTrx = a.store.database.db.transaction().execute(async (trx) => {
            await trx
              .updateTable("balance_accounts")
              .set({ balance: sql`balance - 1` })
              .where("account", "=", "acc")
              .where(fenceHolds({ bot: "x", owner: "a", epoch: ea }))
              .execute();
            await resume;
            await trx.updateTable("balance_accounts").set({ balance: sql`balance - 1` }).where("account", "=", "acc").execute();
          });
          const outcome = inTrx.then(
            () => "committed",
            (e: { code?: string }) => e.code ?? "error",
          );
          await sleep(TTL + 200);
          await b.store.owners.register("b", "h2", 2, ["x"], TTL);
          const t0 = Date.now();
          assert.equal(await b.store.owners.claim("x", "b"), ea + 1, "b takes x over once the server ended a's idle transaction");
          assert.ok(Date.now() - t0 < (IDLE_TRANSACTION_S + 3) * 1000, "not after the 50 s lock wait");
          assert.ok(await b.store.balance.reserve("acc", 500, 0, null, { bot: "x", owner: "b", epoch: ea + 1 }), "and reserves");
          paused();
          assert.notEqual(await outcome, "committed", "a's transaction was rolled back: nothing of it lands");
          assert.equal((await b.store.balance.get("acc"))!.balance, 9_500);
        });
      });
    }

    test("two instances claiming the same orphan at once: one wins", async () => {
      await withDb(dialect, async (make) => {
        const a = await make("a", ["x"]);
        const b = await make("b", ["x"]);
        await a.store.owners.register("a", "h", 1, ["x"], TTL);
        await b.store.owners.register("b", "h", 2, ["x"], TTL);
        const [ea, eb] = await Promise.all([a.store.owners.claim("x", "a"), b.store.owners.claim("x", "b")]);
        assert.equal([ea, eb].filter((e) => e !== undefined).length, 1);
        assert.equal((await a.store.owners.owner("x"))?.epoch, 1);
      });
    });
  });
}
