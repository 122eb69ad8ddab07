import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { TelegramWorker } from "../../src/channels/telegram/worker.js";
import { branchCursorName, pollOnce } from "../../src/poll-2gis.js";
import { TwoGisWorker } from "../../src/channels/twogis/worker.js";
import { longPollCursorName } from "../../src/channels/vk/worker.js";
import { loadBotConfigs } from "../../src/config/load.js";
import { createLogging } from "../../src/logging.js";
import { Pipeline } from "../../src/core/pipeline.js";
import { llmFor } from "../../src/runner.js";
import { openStore, type Store } from "../../src/storage/index.js";
import { BotApiCluster, startConflictProxy } from "../support/conflict-proxy.js";
import { dialects } from "../support/db.js";
import { eventually, Harness, TOKEN } from "../support/harness.js";
import { startTcpProxy } from "../support/tcp-proxy.js";
import { botMessages, userSays, waitForBotMessages } from "../support/telegram.js";
import { OPENAI_KEY, TwoGisSetup } from "../support/twogis.js";
import { VK_SECRET, VkHarness } from "../support/vk-harness.js";
import { messageNew, postCallback } from "../support/vk-server.js";

/**
 * A database the test can take away for real: MariaDB behind a TCP proxy that `fail()` cuts
 * (connections dropped, new ones refused), or an SQLite file on its own small tmpfs that `fail()`
 * fills to the last byte (SQLITE_FULL on every write; reads still work). `store` records through
 * the fault; `observer` reads the same database while it is away (for MariaDB a direct store).
 */
interface FaultyDatabase {
  store: Store;
  observer: Store;
  fail(): void | Promise<void>;
  heal(): void;
  close(): Promise<void>;
}

async function faultyDatabase(dialect: "sqlite" | "mysql", harnessStore: Store, harnessUrl: string): Promise<FaultyDatabase> {
  if (dialect === "mysql") {
    const u = new URL(harnessUrl);
    const proxy = await startTcpProxy(u.hostname, Number(u.port || 3306));
    u.host = `127.0.0.1:${proxy.port}`;
    const store = await openStore(u.toString());
    return {
      store,
      observer: harnessStore,
      fail: () => proxy.cut(),
      heal: () => proxy.restore(),
      close: async () => {
        await store.close();
        await proxy.close();
      },
    };
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), "bots-full-"));
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=3m", "tmpfs", dir]);
  const filler = path.join(dir, "filler");
  let store: Store | undefined;
  try {
    store = await openStore(`sqlite:${path.join(dir, "bots.db")}`);
    await store.balance.topUp("default", 50_000);
  } catch (error) {
    await store?.close();
    execFileSync("umount", [dir]);
    throw error;
  }
  const s = store;
  return {
    store: s,
    observer: s,
    async fail() {
      try {
        writeFileSync(filler, Buffer.alloc(8 << 20));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
      }
      // The WAL may still have room in pages it already holds: write until SQLite says it is full.
      for (let i = 0; ; i++) {
        try {
          await s.cursors.set("fill", `probe-${i}`, "x".repeat(2000));
        } catch {
          return;
        }
        assert.ok(i < 5000, "the database never filled up");
      }
    },
    heal: () => rmSync(filler, { force: true }),
    close: async () => {
      await s.close();
      execFileSync("umount", [dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Incoming rows, ledger and reservations of a store: the books after recovery. */
async function books(store: Store) {
  const rows = await store.database.db.selectFrom("messages").select(["id", "direction", "text", "status", "chat_id"]).orderBy("id").execute();
  const balance = (await store.balance.get("default"))!.balance;
  return {
    incoming: rows.filter((r) => r.direction === "in"),
    outgoing: rows.filter((r) => r.direction === "out"),
    balance,
    ledger: await store.balance.ledgerSum("default"),
    open: (await store.balance.openReservationsOfBot("shop-tg")).length + (await store.balance.openReservationsOfBot("club-vk")).length,
  };
}

const WEBHOOK_YAML = ["  mode: webhook", "  webhook:", "    url: https://bots.example.org/", "    secret_token: s3cr3t-token_value"].join("\n");

function privateChat(id: number) {
  return { id, type: "private", first_name: `U${id}` };
}

/** Bot API updates of the kinds the bot records: text, a photo album, a button press. */
function updates(base: number) {
  const date = Math.floor(Date.now() / 1000);
  const from = (id: number) => ({ id, is_bot: false, first_name: `U${id}` });
  const photo = (n: number) => [{ file_id: `ph${base}-${n}`, file_unique_id: `u${base}-${n}`, width: 90, height: 90, file_size: 1000 }];
  return [
    { update_id: base + 1, message: { message_id: 11, date, chat: privateChat(7001), from: from(7001), text: "текст в простой" } },
    {
      update_id: base + 2,
      message: { message_id: 21, date, chat: privateChat(7002), from: from(7002), media_group_id: "alb-1", photo: photo(1), caption: "альбом" },
    },
    { update_id: base + 3, message: { message_id: 22, date, chat: privateChat(7002), from: from(7002), media_group_id: "alb-1", photo: photo(2) } },
    {
      update_id: base + 4,
      callback_query: {
        id: "cbq-1",
        chat_instance: "ci",
        from: from(7003),
        data: "more",
        message: { message_id: 31, date, chat: privateChat(7003), from: { id: 1, is_bot: true, first_name: "bot" }, text: "menu" },
      },
    },
  ];
}

for (const dialect of dialects()) {
  describe(`acknowledging only what is recorded, the database away for real (${dialect})`, () => {
    test("Telegram webhook: while the database is away every update (text, album, button press) gets 503 with Retry-After and nothing is recorded; Telegram's resends afterwards are recorded and answered once", async () => {
      const h = await Harness.start({ dialect, start: false, extraYaml: WEBHOOK_YAML });
      const db = await faultyDatabase(dialect, h.store, h.db.url);
      const logger = h.logging.forBot("shop-tg");
      const worker = await TelegramWorker.create(h.bot, logger, { backoffMs: 20 });
      const pipeline = new Pipeline({
        bot: h.bot,
        store: db.store,
        llm: llmFor(h.bot, logger, { retry: { baseMs: 20, maxMs: 200 } }),
        channel: worker,
        logger,
        storageRetryBaseMs: 20,
        albumWindowMs: 2000,
      });
      await worker.attach(pipeline);
      const server = http.createServer((req, res) => void worker.handleHttp(req, res));
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const post = (u: unknown) =>
        fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/tg/shop-tg`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-telegram-bot-api-secret-token": "s3cr3t-token_value" },
          body: JSON.stringify(u),
        });
      try {
        const before = await books(db.observer);
        await db.fail();
        for (const u of updates(500)) {
          const r = await post(u);
          assert.equal(r.status, 503, `update ${u.update_id} is not acknowledged while the database is away`);
          assert.equal(r.headers.get("retry-after"), "5");
        }
        assert.equal((await books(db.observer)).incoming.length, before.incoming.length, "nothing was recorded");
        db.heal();
        // Telegram resends what was not acknowledged.
        for (const u of updates(500)) assert.equal((await post(u)).status, 200, `update ${u.update_id} acknowledged once recorded`);
        await pipeline.onIdle();
        assert.deepEqual(
          botMessages(h.telegram, 7001).map((m) => m.text),
          ["echo: текст в простой"],
        );
        assert.deepEqual(
          botMessages(h.telegram, 7002).map((m) => m.text),
          ["echo: [2 photos] альбом"],
          "the album answered once",
        );
        assert.deepEqual(
          botMessages(h.telegram, 7003).map((m) => m.text),
          ["echo: more"],
          "the button press answered once",
        );
        const after = await books(db.store);
        assert.deepEqual(
          after.incoming.map((r) => r.status),
          ["answered", "answered", "skipped", "answered"],
        );
        assert.equal(after.balance, before.balance - 3 * 500, "charged once per answer");
        assert.equal(after.ledger, after.balance, "ledger = balance");
        assert.equal(after.open, 0, "no open reservation");
      } finally {
        await pipeline.drain(1000);
        await new Promise<void>((r) => server.close(() => r()));
        await db.close();
        await h.stop();
      }
    });

    test("Telegram polling: the getUpdates offset does not move past updates that could not be recorded; once the database is back each is recorded and answered once, in order", async () => {
      // Telegram's offset rule (the emulator alone marks updates read once returned).
      let proxy: { url: string; stop(): Promise<void> } | undefined;
      const h = await Harness.start({
        dialect,
        start: false,
        apiRoot: async (root) => {
          proxy = await startConflictProxy(new BotApiCluster(root), "one");
          return proxy.url;
        },
      });
      const db = await faultyDatabase(dialect, h.store, h.db.url);
      const logger = h.logging.forBot("shop-tg");
      const worker = await TelegramWorker.create(h.bot, logger, { idlePauseMs: 20, backoffMs: 50, pollTimeoutS: 1 });
      const pipeline = new Pipeline({
        bot: h.bot,
        store: db.store,
        llm: llmFor(h.bot, logger, { retry: { baseMs: 20, maxMs: 200 } }),
        channel: worker,
        logger,
        storageRetryBaseMs: 20,
      });
      try {
        await worker.start(pipeline);
        await db.fail();
        for (const text of ["p0", "p1", "p2"]) await userSays(h.telegram, TOKEN, 7101, text);
        // Fetched by getUpdates (the emulator marks what it handed out), then the outage lasts a while.
        await eventually(() => h.telegram.storage.userMessages.every((m) => (m as { isRead?: boolean }).isRead), 10_000, "the updates fetched");
        await new Promise((r) => setTimeout(r, 2000));
        assert.equal((await books(db.observer)).incoming.length, 0, "nothing recorded while the database is away");
        db.heal();
        const answers = await waitForBotMessages(h.telegram, 7101, 3, 30_000);
        await pipeline.onIdle();
        assert.deepEqual(
          answers.map((m) => m.text),
          ["echo: p0", "echo: p1", "echo: p2"],
          "each answered, in order",
        );
        const after = await books(db.store);
        assert.deepEqual(
          after.incoming.map((r) => `${r.text}:${r.status}`),
          ["p0:answered", "p1:answered", "p2:answered"],
          "each recorded once",
        );
        assert.equal(botMessages(h.telegram, 7101).length, 3, "answered once each");
        assert.equal(after.ledger, after.balance);
        assert.equal(after.open, 0);
      } finally {
        await worker.stop();
        await pipeline.drain(1000);
        await db.close();
        await h.stop();
        await proxy?.stop();
      }
    });

    test("answers in flight when the database goes away (reserved, the model answering) are finished in-process once it is back: each once, in order per chat, ledger = balance, no open reservation", async () => {
      let store: Store | undefined;
      const h = await Harness.start({ dialect, start: false, startOptions: () => ({ store }) });
      const db = await faultyDatabase(dialect, h.store, h.db.url);
      store = db.store;
      try {
        // As `bots start` runs it: one instance, no peers.
        await h.startBots();
        h.llm.latencyMs = 800;
        const before = await books(db.observer);
        for (const [chat, text] of [
          [7201, "a0"],
          [7201, "a1"],
          [7202, "b0"],
        ] as const)
          await userSays(h.telegram, TOKEN, chat, text);
        // Both chats' first answers are reserved and the model is answering when the database goes away.
        await eventually(
          async () => (await db.observer.balance.history("default", 20)).filter((r) => r.reason === "reserve").length >= 2,
          10_000,
          "two reservations",
        );
        await db.fail();
        await new Promise((r) => setTimeout(r, 2000));
        db.heal();
        const a = await waitForBotMessages(h.telegram, 7201, 2, 40_000);
        const b = await waitForBotMessages(h.telegram, 7202, 1, 40_000);
        await eventually(async () => (await books(db.store)).incoming.every((r) => r.status === "answered"), 40_000, "all answered");
        await h.pipeline.onIdle();
        assert.deepEqual(
          a.map((m) => m.text),
          ["echo: a0", "echo: a1"],
          "chat 7201: once each, in order",
        );
        assert.deepEqual(
          b.map((m) => m.text),
          ["echo: b0"],
        );
        assert.equal(botMessages(h.telegram, 7201).length + botMessages(h.telegram, 7202).length, 3, "nothing sent twice");
        const after = await books(db.store);
        assert.equal(after.incoming.length, 3);
        assert.equal(after.balance, before.balance - 3 * 500, "charged once per answer");
        assert.equal(after.ledger, after.balance, "ledger = balance");
        assert.equal(after.open, 0, "no open reservation");
        const refunds = (await db.store.balance.history("default", 50)).filter((r) => r.reason === "refund").length;
        assert.ok(refunds >= 1, "the outage cut an answer off: its reservation was given back before it was answered again");
      } finally {
        await h.running?.stop(2000);
        h.running = undefined;
        await db.close();
        await h.stop();
      }
    });

    test("VK: the callback is not answered `ok` and long poll keeps its ts while the database is away; both are recorded and answered once afterwards", async () => {
      const cb = await VkHarness.start({ dialect });
      const dbCb = await faultyDatabase(dialect, cb.store, cb.db.url);
      try {
        await cb.stopBots();
        await cb.startBots(dbCb.store);
        const event = messageNew({ groupId: cb.groupId, peerId: 8001, id: 1, text: "колбэк", secret: VK_SECRET });
        await dbCb.fail();
        const refused = await postCallback(cb.callbackUrl, event);
        assert.ok(refused.status >= 500 && refused.text !== "ok", `not acknowledged: ${refused.status} ${refused.text}`);
        dbCb.heal();
        const resent = await postCallback(cb.callbackUrl, event, { "x-retry-counter": "1" });
        assert.deepEqual(resent, { status: 200, text: "ok" });
        await eventually(async () => (await books(dbCb.store)).incoming.some((r) => r.status === "answered"), 20_000, "answered");
        await cb.pipeline.onIdle();
        assert.equal(cb.vk.callsOf("messages.send").length, 1, "answered once");
        const after = await books(dbCb.store);
        assert.equal(after.ledger, after.balance);
        assert.equal(after.open, 0);
      } finally {
        await cb.stopBots();
        await dbCb.close();
        await cb.stop();
      }

      const lp = await VkHarness.start({ dialect, mode: "longpoll" });
      const dbLp = await faultyDatabase(dialect, lp.store, lp.db.url);
      try {
        await lp.stopBots();
        await lp.startBots(dbLp.store);
        const cursor = longPollCursorName(lp.groupId);
        const ts = await dbLp.observer.cursors.get("club-vk", cursor);
        await dbLp.fail();
        lp.vk.pushLongPoll(messageNew({ groupId: lp.groupId, peerId: 8101, id: 1, text: "лонгпол" }));
        await eventually(
          async () => (await lp.logLines()).some((l) => String(l.msg).startsWith("long poll event could not be recorded")),
          30_000,
          "a failed recording",
        );
        assert.equal(await dbLp.observer.cursors.get("club-vk", cursor), ts, "ts kept");
        assert.equal((await books(dbLp.observer)).incoming.length, 0);
        dbLp.heal();
        await eventually(async () => (await books(dbLp.store)).incoming.some((r) => r.status === "answered"), 40_000, "answered");
        await lp.pipeline.onIdle();
        assert.equal(lp.vk.callsOf("messages.send").length, 1, "answered once");
        await eventually(async () => (await dbLp.store.cursors.get("club-vk", cursor)) === String(lp.vk.longPollTs), 10_000, "ts moved past it");
        const after = await books(dbLp.store);
        assert.equal(after.ledger, after.balance);
        assert.equal(after.open, 0);
      } finally {
        await lp.stopBots();
        await dbLp.close();
        await lp.stop();
      }
    });

    test("2GIS: a pass while the database is away posts nothing and leaves the branch cursor; the next pass answers each review once and moves it", async () => {
      const g = await TwoGisSetup.start({ dialect });
      const db = await faultyDatabase(dialect, g.store, g.db.url);
      const logging = createLogging({ logDir: g.fixture.logDir, console: false, level: "debug", secrets: [OPENAI_KEY] });
      try {
        const { bots } = loadBotConfigs(g.fixture.configDir, { OPENAI_API_KEY: OPENAI_KEY, DGIS_LOGIN: g.dgis.login, DGIS_PASSWORD: g.dgis.password });
        const bot = bots[0]!;
        const logger = logging.forBot(bot.name);
        const branch = g.branches[0]!;
        for (const [i, text] of ["Отлично", "Хорошо"].entries())
          g.dgis.addReview(branch, { text, rating: 5, dateCreated: new Date(Date.now() - (10 - i) * 60_000).toISOString() });
        const worker = await TwoGisWorker.create(bot, logger, { store: db.store, backoffMs: 20 });
        const pipeline = new Pipeline({
          bot,
          store: db.store,
          llm: llmFor(bot, logger, { retry: { baseMs: 20, maxMs: 200 } }),
          channel: worker,
          logger,
          storageRetryBaseMs: 20,
        });
        const pass = () => pollOnce({ bot, store: db.store, pipeline, client: worker.client, logger });
        const cursor = branchCursorName(branch);
        await db.fail();
        await assert.rejects(pass());
        await pipeline.onIdle();
        assert.equal(await db.observer.cursors.get(bot.name, cursor), undefined, "cursor not moved");
        assert.equal(g.dgis.reviews.filter((r) => g.dgis.answersTo(r.id).length > 0).length, 0, "nothing posted");
        db.heal();
        const result = await pass();
        assert.equal(result.answered, 2);
        assert.deepEqual(
          g.dgis.reviews.map((r) => g.dgis.answersTo(r.id).length),
          [1, 1],
          "each review answered once",
        );
        assert.ok(await db.store.cursors.get(bot.name, cursor), "cursor moved past them");
        const balance = (await db.store.balance.get("default"))!.balance;
        assert.equal(await db.store.balance.ledgerSum("default"), balance);
        assert.equal((await db.store.balance.openReservationsOfBot(bot.name)).length, 0);
      } finally {
        await logging.flush();
        await db.close();
        await g.stop();
      }
    });
  });
}
