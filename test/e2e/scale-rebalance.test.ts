import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { sql } from "kysely";
import { Cluster, CLUSTER_BALANCE, fairShare, sleep, THREE } from "../support/cluster.js";
import { eventually } from "../support/harness.js";
import type { Scenario } from "../support/scenario.js";
import { startTcpProxy } from "../support/tcp-proxy.js";

/**
 * Scale-out on MySQL/MariaDB, where bots move between live instances: an instance
 * joining mid-load, a database outage longer than the lease under three instances, and an
 * instance paused inside an open InnoDB transaction (its row locks). Same
 * cluster as scale-cluster.test.ts (6 Telegram bots, a Bot API with 409 Conflict per instance,
 * lease TTL 2 s); invariants, not timings. SQLite does not rebalance and has no network to cut.
 */

const INITIAL = CLUSTER_BALANCE * 100;

describe("scale-out on MySQL: rebalancing, a database outage, a pause holding row locks", {
  skip: process.env.MYSQL_URL ? false : "MYSQL_URL is not set (these need MySQL/MariaDB)",
}, () => {
  const open: Scenario[] = [];
  after(async () => {
    for (const s of open) await s.close();
  });
  const cluster = async (o?: Parameters<typeof Cluster.create>[1]) => {
    const c = await Cluster.create("mysql", o);
    open.push(c.s);
    return c;
  };

  test("an instance joins mid-load: bots rebalance to 2 each without a message lost or answered twice", async () => {
    const c = await cluster({ latencyMs: 100 });
    await Promise.all(["i1", "i2"].map((id) => c.start(id)));
    await c.settled(["i1", "i2"], fairShare);
    let loading = true;
    let n = 0;
    const load = (async () => {
      // Bounded, so a placement that never settles cannot drain the balance.
      while (loading && n < 80) {
        await c.say("join", n++);
        await sleep(150);
      }
    })();
    const mark = new Map(["i1", "i2"].map((id) => [id, c.instances.get(id)!.child.out.stderr.length]));
    try {
      await c.start("i3");
      await c.settled(THREE, fairShare);
      const target = n + 2;
      await eventually(() => n >= target || n >= 80, 10_000, "two more rounds after the rebalance");
    } finally {
      loading = false;
      await load;
    }
    await c.assertAnsweredOnceInOrder();
    const handed = ["i1", "i2"].flatMap((id) =>
      [
        ...c.instances
          .get(id)!
          .child.out.stderr.slice(mark.get(id))
          .matchAll(/handing (\S+) over/g),
      ].map((m) => m[1]),
    );
    assert.equal(handed.length, 2, `from 3+3 to 2+2+2: two hand-overs, none handed over and taken back (${handed.join(", ")})`);
    assert.deepEqual(await c.chargeMismatches(), [], "each reply charged exactly once");
    await c.s.assertBooks(INITIAL);
  });

  test("database outage longer than the TTL under 3 instances: afterwards one owner per bot, answered only by it; every message answered once, in order; exact books", async () => {
    const c = await cluster({ latencyMs: 50 });
    const url = new URL(c.s.db.url);
    const tcp = await startTcpProxy(url.hostname, Number(url.port || 3306));
    c.s.closers.push(tcp.close);
    url.hostname = "127.0.0.1";
    url.port = String(tcp.port);
    await Promise.all(THREE.map((id) => c.start(id, { DATABASE_URL: url.toString() })));
    await c.settled(THREE, fairShare);
    await c.say("outage", 0);
    // Recorded too: an answer sent whose record the cut stops is `unconfirmed` by design.
    await eventually(async () => (await c.s.countStatus("answered")) === c.chats.length, 20_000, "answered and recorded before the outage");
    tcp.cut();
    try {
      await c.say("outage", 1);
      await sleep(c.ttlS * 1000 * 2);
      await c.say("outage", 2);
    } finally {
      tcp.restore();
    }
    const owners = await c.settled(THREE, fairShare);
    await sleep(c.api.holdMs + 500);
    const since = Date.now();
    await c.say("outage", 3);
    await c.say("outage", 4);
    await c.assertAnsweredOnceInOrder();
    assert.deepEqual(c.api.conflictsOf(undefined, since), [], "no two pollers of a token after the outage");
    for (const bot of c.s.bots) {
      const owner = owners.get(bot.name)!;
      assert.deepEqual(c.sendersOf(bot, since), [owner], `${bot.name} answered only by its owner ${owner}`);
      for (const id of THREE) assert.equal(c.runsPerLog(id).has(bot.name), id === owner, `${id}'s log ${id === owner ? "runs" : "does not run"} ${bot.name}`);
    }
    assert.deepEqual(await c.chargeMismatches(), [], "each reply charged exactly once");
    await c.s.assertBooks(INITIAL);
  });

  test("SIGSTOP inside an open transaction: the paused instance's row locks do not stop the others; its bots are taken over and every message answered while it sleeps", async () => {
    const c = await cluster({ latencyMs: 20 });
    // With the answer procedures (src/storage/migrations/0014_procedures.ts) an answer's
    // transactions run inside one CALL each and no client holds one open between round trips;
    // without them (a user without CREATE ROUTINE) the reserve and the settle are client-side
    // transactions, which a pause can land in. The instances start without them, so they use
    // those (each process reads which procedures exist when it opens the database).
    for (const name of ["bots_reserve", "bots_settle"]) await sql.raw(`DROP PROCEDURE IF EXISTS ${name}`).execute(c.s.store.database.db);
    await Promise.all(THREE.map((id) => c.start(id)));
    await c.settled(THREE, fairShare);
    const victim = "i1";
    const rest = ["i2", "i3"];
    const child = c.instances.get(victim)!.child;
    const mine = (await c.ownedPerInstance()).get(victim)!;
    /**
     * Whether the (paused) victim holds a lock on one of its bots' `bot_owners` rows (a fenced
     * write in an open transaction locks it; a take-over must update it): an exclusive read with
     * NOWAIT of those rows (by primary key, so no other row is locked) fails then, twice 100 ms apart.
     */
    const holdsOwnerRows = async (): Promise<boolean> => {
      const probe = () =>
        c.s.store.database.db
          .transaction()
          .execute((trx) => sql`select bot from bot_owners where bot in (${sql.join(mine)}) for update nowait`.execute(trx))
          .then(
            () => false,
            () => true,
          );
      if (!(await probe())) return false;
      await sleep(100);
      return probe();
    };
    let loading = true;
    let n = 0;
    const load = (async () => {
      while (loading && n < 40) await c.say("trx", n++);
    })();
    let held = false;
    try {
      // Pause at random moments under load until one lands inside a fenced transaction.
      for (let i = 0; i < 300 && !held; i++) {
        child.kill("SIGSTOP");
        held = await holdsOwnerRows();
        if (held) break;
        child.kill("SIGCONT");
        await sleep(Math.random() * 20);
      }
      loading = false;
      await load;
      assert.ok(held, "paused inside an open transaction that locks its bots' owner rows");
      await c.say("trx-paused", 0);
      // Still paused: the others take its bots over and answer everything.
      await c.settled(rest, undefined, 20_000);
      await eventually(
        () => c.chats.every((ch) => c.answers(ch).length >= ch.said.length),
        20_000,
        "every message answered while the instance holding row locks sleeps",
      );
    } finally {
      loading = false;
      child.kill("SIGCONT");
      await load;
    }
    await c.assertAnsweredOnceInOrder();
    assert.deepEqual(await c.chargeMismatches(), [], "each reply charged exactly once");
    await c.s.assertBooks(INITIAL);
  });
});
