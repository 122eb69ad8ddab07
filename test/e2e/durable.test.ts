import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, describe, test } from "node:test";
import { finished, runBots, spawnBots } from "../support/cli.js";
import { dialects } from "../support/db.js";
import { eventually, TOKEN } from "../support/harness.js";
import { lastUserText } from "../support/openai-server.js";
import { Scenario } from "../support/scenario.js";
import { botMessages, userSays } from "../support/telegram.js";

/** Sends `perChat` numbered messages to each of `chats` private chats, round by round. */
async function sendLoad(s: Scenario, chats: number, perChat: number, firstChat = 1000): Promise<void> {
  for (let i = 0; i < perChat; i++) for (let c = 0; c < chats; c++) await userSays(s.telegram, TOKEN, firstChat + c, `c${firstChat + c} m${i}`);
}

/** Asserts every chat got exactly its answers, once each and in order. */
function assertAnsweredInOrder(s: Scenario, chats: number, perChat: number, firstChat = 1000): void {
  for (let c = 0; c < chats; c++) {
    const chat = firstChat + c;
    const got = botMessages(s.telegram, chat).map((m) => m.text);
    assert.deepEqual(
      got,
      Array.from({ length: perChat }, (_, i) => `echo: c${chat} m${i}`),
      `chat ${chat}: every message answered once, in order`,
    );
  }
}

for (const dialect of dialects()) {
  describe(`durable answers across restarts and crashes, through bin/bots.js (${dialect})`, () => {
    const open: Scenario[] = [];
    after(async () => {
      for (const s of open) await s.close();
    });
    const scenario = async (o?: Parameters<typeof Scenario.create>[1]) => {
      const s = await Scenario.create(dialect, o);
      open.push(s);
      return s;
    };

    test("kill -9 under load, then start again: every message answered once, in order; replies charged = answers sent", async () => {
      const s = await scenario({ concurrency: 4 });
      s.llm.respond = (req) => ({ text: `echo: ${lastUserText(req)}`, delayMs: 200 + Math.floor(Math.random() * 500) });
      const chats = 16;
      const perChat = 4;
      const a = await s.start();
      await sendLoad(s, chats, perChat);
      await eventually(async () => (await s.incoming()).length === chats * perChat, 20_000, "every message recorded");
      await eventually(async () => (await s.countStatus("answered")) >= 6, 20_000, "some answers out");
      // Not inside a delivery: an answer cut off between its claim and its record is `unconfirmed` by design (tested on its own below).
      await s.killOutsideDelivery(a);
      const before = await s.countStatus("answered");
      assert.ok(before < chats * perChat, `the kill left work to do (answered ${before})`);

      const b = await s.start();
      await eventually(async () => (await s.countStatus("answered")) === chats * perChat, 60_000, "all answered after the restart");
      b.kill("SIGTERM");
      assert.equal((await finished(b, 30_000)).code, 0);
      assertAnsweredInOrder(s, chats, perChat);
      const sent = s.telegram.storage.botMessages.length;
      assert.equal(sent, chats * perChat, "answers sent = messages");
      await s.assertBooks(1000 * 100);
      const answeredRows = (await s.incoming()).filter((r) => r.status === "answered");
      assert.equal(
        answeredRows.reduce((n, r) => n + (r.cost ?? 0), 0),
        sent * 500,
        "replies charged = answers sent",
      );
      const log = readFileSync(`${s.fx.logDir}/shop-tg.log`, "utf8");
      assert.match(log, /"msg":"recovery done"/);
      const status = await runBots(["status", "--json"], { cwd: s.fx.root });
      const bot = (JSON.parse(status.stdout) as { bots: Array<{ name: string; waiting: number; last_recovery: { resumed: number } | null }> }).bots[0]!;
      assert.equal(bot.waiting, 0);
      assert.ok(bot.last_recovery !== null, "status shows the last recovery");
    });

    test("SIGTERM while the model is slower than the drain: nothing stays reserved between stop and start; the next start answers the rest", async () => {
      const s = await scenario({ concurrency: 3 });
      s.llm.latencyMs = 2500;
      const chats = 6;
      const perChat = 2;
      const a = await s.start(["--drain-timeout", "1"]);
      await sendLoad(s, chats, perChat, 2000);
      await eventually(async () => (await s.incoming()).length === chats * perChat, 20_000, "every message recorded");
      await eventually(() => s.llm.requests.length >= 3, 10_000, "model calls running");
      a.kill("SIGTERM");
      const res = await finished(a, 30_000);
      assert.equal(res.code, 0, res.stderr);
      // Between the stop and the next start: books exact, every message answered or waiting.
      await s.assertBooks(1000 * 100);
      const rows = await s.incoming();
      assert.ok(
        rows.every((r) => r.status === "answered" || r.status === "received"),
        JSON.stringify(rows.map((r) => r.status)),
      );
      assert.ok(
        rows.some((r) => r.status === "received"),
        "the drain left some unanswered",
      );

      s.llm.latencyMs = 50;
      const b = await s.start();
      await eventually(async () => (await s.countStatus("answered")) === chats * perChat, 30_000, "all answered after the restart");
      b.kill("SIGTERM");
      assert.equal((await finished(b, 30_000)).code, 0);
      assertAnsweredInOrder(s, chats, perChat, 2000);
      await s.assertBooks(1000 * 100);
    });

    test("age limit: a stranded message older than resume_within expires, is refunded and is answerable by replay; a recent one is answered", async () => {
      const s = await scenario({ resumeWithin: "30m" });
      const now = Date.now();
      const seed = async (chat: number, text: string, ageMs: number) => {
        const id = (await s.store.messages.insertIncoming({
          bot: "shop-tg",
          channel: "tg",
          thread_key: `tg:${chat}`,
          chat_id: String(chat),
          user_id: String(chat),
          user_name: "U",
          text,
          dedupe_key: `${chat}:${text}`,
          channel_message_id: "1",
          meta: { kind: "messages", target: {} },
          status: "received",
          created_ms: now - ageMs,
        }))!;
        // A crash after reserving: the reservation is open.
        await s.store.balance.reserve("default", 500, 0, id);
        return id;
      };
      const oldId = await seed(3001, "old question", 45 * 60_000);
      const newId = await seed(3002, "recent question", 5 * 60_000);
      const a = await s.start();
      await eventually(async () => (await s.store.messages.get(newId))!.status === "answered", 20_000, "recent one answered");
      a.kill("SIGTERM");
      assert.equal((await finished(a, 30_000)).code, 0);
      const old = (await s.store.messages.get(oldId))!;
      assert.equal(old.status, "expired");
      assert.match(old.error ?? "", /resume_within \(30m\)/);
      assert.equal(botMessages(s.telegram, 3001).length, 0, "the expired one was not answered by itself");
      assert.deepEqual(
        botMessages(s.telegram, 3002).map((m) => m.text),
        ["echo: recent question"],
      );
      await s.assertBooks(1000 * 100);

      const replay = await runBots(["replay", "--send", "--status", "expired", "--since", "2h"], { cwd: s.fx.root });
      assert.equal(replay.code, 0, replay.stderr);
      assert.equal((await s.store.messages.get(oldId))!.status, "answered");
      assert.deepEqual(
        botMessages(s.telegram, 3001).map((m) => m.text),
        ["echo: old question"],
      );
      await s.assertBooks(1000 * 100);
      assert.equal((await s.store.balance.get("default"))!.balance, 1000 * 100 - 2 * 500, "two answers, two charges");
    });

    test("a row left delivering on Telegram becomes unconfirmed: not sent again, charge kept, shown by status and replay", async () => {
      const s = await scenario();
      const id = (await s.store.messages.insertIncoming({
        bot: "shop-tg",
        channel: "tg",
        thread_key: "tg:4001",
        chat_id: "4001",
        user_id: "4001",
        user_name: "U",
        text: "cut off",
        dedupe_key: "4001:1",
        channel_message_id: "1",
        meta: { kind: "messages", target: {} },
        status: "received",
        created_ms: Date.now() - 60_000,
      }))!;
      await s.store.balance.reserve("default", 500, 0, id);
      await s.store.messages.setStatus(id, "delivering");
      const a = await s.start();
      await eventually(async () => (await s.store.messages.get(id))!.status === "unconfirmed", 20_000, "unconfirmed");
      assert.equal((await s.store.messages.get(id))!.cost, 500, "the row shows the charge that stands");
      await userSays(s.telegram, TOKEN, 4002, "next");
      await eventually(() => botMessages(s.telegram, 4002).length === 1, 20_000, "live message answered");
      a.kill("SIGTERM");
      assert.equal((await finished(a, 30_000)).code, 0);
      assert.equal(botMessages(s.telegram, 4001).length, 0, "never sent again by itself");
      assert.equal((await s.store.balance.get("default"))!.balance, 1000 * 100 - 1000, "the cut-off answer's charge stands, plus the live one");
      assert.equal(await s.store.balance.ledgerSum("default"), (await s.store.balance.get("default"))!.balance);
      const status = await runBots(["status"], { cwd: s.fx.root });
      assert.match(status.stdout, /1 answer\(s\) unconfirmed/);
      const listed = await runBots(["replay", "--status", "unconfirmed", "--json"], { cwd: s.fx.root });
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, /"status":"unconfirmed"/);
      assert.equal(botMessages(s.telegram, 4001).length, 0, "a dry run sends nothing");
    });

    test("recovery runs once: two processes starting together on one database resume each stranded message once", async () => {
      const s = await scenario();
      const ids: number[] = [];
      for (let i = 0; i < 8; i++) {
        const chat = 5000 + i;
        ids.push(
          (await s.store.messages.insertIncoming({
            bot: "shop-tg",
            channel: "tg",
            thread_key: `tg:${chat}`,
            chat_id: String(chat),
            user_id: String(chat),
            user_name: "U",
            text: `stranded ${i}`,
            dedupe_key: `${chat}:1`,
            channel_message_id: "1",
            meta: { kind: "messages", target: {} },
            status: "received",
            created_ms: Date.now() - 1000,
          }))!,
        );
      }
      s.llm.latencyMs = 100;
      const [a, b] = await Promise.all([s.start(), s.start()]);
      await eventually(async () => (await s.countStatus("answered")) === 8, 30_000, "stranded answered");
      await new Promise((r) => setTimeout(r, 500));
      a.kill("SIGTERM");
      b.kill("SIGTERM");
      await Promise.all([finished(a, 30_000), finished(b, 30_000)]);
      for (let i = 0; i < 8; i++) {
        assert.equal(s.llm.requests.filter((r) => lastUserText(r) === `stranded ${i}`).length, 1, `message ${i}: one model call`);
        assert.equal(botMessages(s.telegram, 5000 + i).length, 1, `message ${i}: one answer`);
      }
      const runs = await s.store.database.db.selectFrom("recoveries").selectAll().execute();
      assert.equal(runs.filter((r) => Number(r.resumed) > 0).length, 1, "one process resumed them");
      await s.assertBooks(1000 * 100);
    });

    test("log lines reach the bot's file within a second while it runs, and bots logs tail -f shows them live", async () => {
      const s = await scenario();
      const a = await s.start();
      const file = `${s.fx.logDir}/shop-tg.log`;
      const tail = spawnBots(["logs", "tail", "shop-tg", "-f", "-n", "0"], { cwd: s.fx.root });
      s.children.push(tail);
      await new Promise((r) => setTimeout(r, 500));
      await userSays(s.telegram, TOKEN, 6001, "log me");
      await eventually(() => botMessages(s.telegram, 6001).length === 1, 20_000, "answered");
      // The process is still running: nothing has flushed it on exit. (The bound: 1 s.)
      await eventually(() => /"msg":"answer delivered"/.test(readFileSync(file, "utf8")), 1000, "the line in the file within 1 s");
      await eventually(() => tail.out.stdout.includes("answer delivered"), 5000, "bots logs tail -f shows it");
      assert.equal(a.exitCode, null);
      tail.kill("SIGINT");
      await finished(tail, 5000);
    });
  });
}
