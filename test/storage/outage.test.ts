import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createConnection } from "mysql2/promise";
import { dialects } from "../support/db.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";
import { openStore, type Store } from "../../src/storage/index.js";
import type { Pipeline } from "../../src/core/pipeline.js";
import type { OutgoingReply } from "../../src/core/types.js";
import { sendProactive } from "../../src/core/proactive.js";
import { eventually, Harness, privateText, TOKEN } from "../support/harness.js";
import { userSays, waitForBotMessages } from "../support/telegram.js";

/** Kills every server connection to one database, as a server restart or a network cut would. */
async function killConnections(url: string): Promise<number> {
  const u = new URL(url);
  const admin = await createConnection({
    host: u.hostname,
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
  });
  try {
    const [rows] = await admin.query("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()", [u.pathname.slice(1)]);
    const ids = (rows as Array<{ ID: number }>).map((r) => r.ID);
    for (const id of ids) await admin.query(`KILL CONNECTION ${Number(id)}`).catch(() => undefined);
    return ids.length;
  } finally {
    await admin.end();
  }
}

/**
 * Runs `fn` with the harness bot (not started) and a pipeline of it whose store reaches the test
 * database through a TCP proxy the test can cut (short storage back-off); answers the pipeline
 * sends are collected in `sent`. Everything is closed afterwards.
 */
async function withProxiedPipeline(
  dialect: "sqlite" | "mysql",
  fn: (t: { h: Harness; proxy: TcpProxy; store: Store; pipeline: Pipeline; sent: Array<{ chat: string; text: string }> }) => Promise<void>,
): Promise<void> {
  const h = await Harness.start({ dialect, start: false });
  const u = new URL(h.db.url);
  const proxy = await startTcpProxy(u.hostname, Number(u.port || 3306));
  u.host = `127.0.0.1:${proxy.port}`;
  const store = await openStore(u.toString());
  try {
    const sent: Array<{ chat: string; text: string }> = [];
    const pipeline = h.pipelineTo((chat, text) => sent.push({ chat, text }), { store, storageRetryBaseMs: 100 });
    await fn({ h, proxy, store, pipeline, sent });
  } finally {
    await store.close();
    await proxy.close();
    await h.stop();
  }
}

for (const dialect of dialects().filter((d) => d === "mysql")) {
  describe(`database blip while running (${dialect})`, () => {
    test("connections killed under a running bot: the next messages are still recorded, answered and charged once", async () => {
      const h = await Harness.start({ dialect });
      try {
        await userSays(h.telegram, TOKEN, 1301, "before");
        await waitForBotMessages(h.telegram, 1301, 1);
        await h.pipeline.onIdle();
        const killed = await killConnections(h.db.url);
        assert.ok(killed > 0, "the bot had open connections to kill");
        for (let i = 0; i < 3; i++) await userSays(h.telegram, TOKEN, 1302 + i, `after ${i}`);
        for (let i = 0; i < 3; i++) assert.equal((await waitForBotMessages(h.telegram, 1302 + i, 1))[0]!.text, `echo: after ${i}`);
        await eventually(async () => (await h.messages()).filter((m) => m.status === "answered").length === 4, 20_000, "all answered");
        assert.equal(await h.balance(), 50000 - 4 * 500);
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
      } finally {
        await h.stop();
      }
    });

    test("the reply to the delivery claim is lost (the UPDATE committed, the connection dropped): nothing was sent, so the answer is sent once when the database answers, recorded `answered` and charged once", async () => {
      await withProxiedPipeline(dialect, async ({ h, proxy, pipeline, sent }) => {
        const before = await h.balance();
        proxy.dropReplyTo("set `status` = 'delivering'");
        assert.equal((await pipeline.submit(privateText(1601, 1, "claim lost"))).status, "queued");
        await pipeline.onIdle();
        assert.equal(proxy.droppedReplies, 1, "the claim's reply was lost");
        assert.deepEqual(
          sent.map((x) => x.text),
          ["echo: claim lost"],
          "sent once",
        );
        const rows = await h.store.database.db.selectFrom("messages").select(["status"]).where("direction", "=", "in").execute();
        assert.deepEqual(
          rows.map((r) => r.status),
          ["answered"],
        );
        assert.equal(await h.balance(), before - 500, "charged once");
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
      });
    });

    test("the reply to a proactive message's delivery claim is lost: nothing is sent, the row is `failed` and its reservation refunded", async () => {
      await withProxiedPipeline(dialect, async ({ h, proxy, store }) => {
        const before = await h.balance();
        const sent: string[] = [];
        const channel = { send: async (_to: unknown, reply: OutgoingReply) => (sent.push(reply.text), { channelMessageId: "1" }) };
        const write = async () => ({ text: "written", model: "m", usage: { prompt_tokens: 1, completion_tokens: 1 }, latencyMs: 1 });
        proxy.dropReplyTo("set `status` = 'delivering'");
        await assert.rejects(sendProactive({ bot: h.bot, store, channel, now: Date.now }, { chatId: "1701", threadKey: "tg:1701", text: "template", write }));
        assert.equal(proxy.droppedReplies, 1, "the claim's reply was lost");
        assert.deepEqual(sent, [], "nothing sent");
        const rows = await h.store.database.db.selectFrom("messages").select(["status"]).where("direction", "=", "out").execute();
        assert.deepEqual(
          rows.map((r) => r.status),
          ["failed"],
        );
        assert.equal(await h.balance(), before, "the reservation was refunded");
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
      });
    });

    test("the database goes away while answers are in flight: each is answered again once it is back, once, in order per chat, and charged once", async () => {
      await withProxiedPipeline(dialect, async ({ h, proxy, pipeline, sent }) => {
        h.llm.latencyMs = 600;
        const msg = (chat: number, i: number) => privateText(chat, i, `c${chat} m${i}`);
        const before = await h.balance();
        for (const m of [msg(1501, 0), msg(1501, 1), msg(1502, 0)]) assert.equal((await pipeline.submit(m)).status, "queued");
        // The cost is reserved and the model is answering when the database goes away.
        await eventually(
          async () => (await h.store.balance.history("default", 10)).filter((r) => r.reason === "reserve").length === 2,
          5000,
          "two reservations",
        );
        proxy.cut();
        await new Promise((r) => setTimeout(r, 1500));
        proxy.restore();
        await pipeline.onIdle();
        assert.deepEqual(
          sent.filter((x) => x.chat === "1501").map((x) => x.text),
          ["echo: c1501 m0", "echo: c1501 m1"],
          "chat 1501: once each, in order",
        );
        assert.deepEqual(
          sent.filter((x) => x.chat === "1502").map((x) => x.text),
          ["echo: c1502 m0"],
        );
        const rows = await h.store.database.db.selectFrom("messages").select(["status"]).where("direction", "=", "in").execute();
        assert.deepEqual(
          rows.map((r) => r.status),
          ["answered", "answered", "answered"],
        );
        assert.equal(await h.balance(), before - 3 * 500, "charged once per answer");
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
        assert.equal(
          (await h.store.balance.history("default", 50)).filter((r) => r.reason === "refund").length,
          2,
          "the cut-off attempts' reservations were given back",
        );
      });
    });

    test("the database unreachable for a while: messages wait, retry, and are all recorded and answered once", async () => {
      await withProxiedPipeline(dialect, async ({ h, proxy, store, pipeline, sent }) => {
        await store.balance.topUp("default", 100);
        const msg = (i: number) => privateText(1400 + i, 1, `during ${i}`);
        proxy.cut();
        const intakes = [0, 1, 2].map((i) => pipeline.submit(msg(i)));
        await new Promise((r) => setTimeout(r, 1500));
        proxy.restore();
        const results = await Promise.all(intakes);
        assert.deepEqual(
          results.map((r) => r.status),
          ["queued", "queued", "queued"],
        );
        await pipeline.onIdle();
        assert.deepEqual(sent.map((x) => x.text).sort(), ["echo: during 0", "echo: during 1", "echo: during 2"]);
        const rows = await h.store.database.db.selectFrom("messages").select(["text", "status"]).where("direction", "=", "in").orderBy("id").execute();
        assert.deepEqual(
          rows.map((r) => r.status),
          ["answered", "answered", "answered"],
        );
        assert.equal((await h.store.balance.get("default"))!.balance, 50000 + 100 - 3 * 500);
        assert.equal(await h.store.balance.ledgerSum("default"), (await h.store.balance.get("default"))!.balance);
      });
    });
  });
}
