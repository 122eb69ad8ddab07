import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { after, describe, test } from "node:test";
import type { TelegramServer } from "telegram-test-api/lib/telegramServer.js";
import { openStore, type Store } from "../../src/storage/index.js";
import { ensureBuilt, finished, spawnBots } from "../support/cli.js";
import { createTestDatabase, dialects, type TestDatabase } from "../support/db.js";
import { Fixture } from "../support/fixture.js";
import { eventually, TOKEN } from "../support/harness.js";
import { FakeOpenAI } from "../support/openai-server.js";
import { botMessages, startTelegram } from "../support/telegram.js";
import { FakeVk, messageNew, postCallback } from "../support/vk-server.js";

const TG_SECRET = "hook-secret_123";
const VK_SECRET = "vk-callback-secret";
const VK_CONFIRM = "c0nf1rm";

type Child = ReturnType<typeof spawnBots>;

/**
 * Three `bin/bots.js start` instances on one database with a Telegram webhook bot and a VK
 * callback bot: updates are POSTed to the instances' `--http-port` in turn (a load balancer's
 * round-robin), so most reach an instance that does not own the bot.
 */
class Cluster {
  fx = new Fixture();
  llm = new FakeOpenAI();
  vk = new FakeVk();
  telegram!: TelegramServer;
  db!: TestDatabase;
  store!: Store;
  children: Array<{ child: Child; port: number }> = [];

  async setUp(dialect: "sqlite" | "mysql"): Promise<void> {
    await ensureBuilt();
    this.telegram = (await startTelegram()).server;
    await this.llm.start();
    await this.vk.start();
    this.db = await createTestDatabase(dialect);
    this.fx.write("prompts/p.md", "Be brief.");
    const llm = [
      "llm:",
      "  model: m",
      "  api_key: ${OPENAI_API_KEY}",
      `  base_url: ${this.llm.url}`,
      "  timeout_s: 20",
      "spam: { max_per_minute: 100, duplicate_window_s: 0 }",
    ];
    this.fx.bot(
      "hook-tg",
      [
        "channel: tg",
        "prompt: prompts/p.md",
        ...llm,
        "tg:",
        "  token: ${TG_TOKEN}",
        `  api_root: ${this.telegram.config.apiURL}`,
        "  mode: webhook",
        "  webhook:",
        "    url: https://bots.example.org",
        `    secret_token: ${TG_SECRET}`,
      ].join("\n"),
    );
    this.fx.bot(
      "club-vk",
      [
        "channel: vk",
        "prompt: prompts/p.md",
        ...llm,
        "vk:",
        "  token: ${VK_TOKEN}",
        `  group_id: ${this.vk.groupId}`,
        `  api_base_url: ${this.vk.url}`,
        "  callback:",
        `    confirmation: ${VK_CONFIRM}`,
        `    secret: ${VK_SECRET}`,
      ].join("\n"),
    );
    this.fx.write(".env", `OPENAI_API_KEY=sk-test-key-123456\nTG_TOKEN=${TOKEN}\nVK_TOKEN=${this.vk.token}\nDATABASE_URL=${this.db.url}\n`);
    this.store = await openStore(this.db.url);
    await this.store.balance.topUp("default", 100_000);
  }

  async start(id: string): Promise<{ child: Child; port: number }> {
    const child = spawnBots(["start", "--instance-id", id, "--lease-ttl", "3", "--http-port", "0"], { cwd: this.fx.root });
    const port = await eventually(() => Number(/HTTP on [\d.]+:(\d+)/.exec(child.out.stderr)?.[1] ?? 0) || child.exitCode !== null, 20_000, "HTTP port");
    assert.equal(child.exitCode, null, child.out.stderr);
    const entry = { child, port: Number(port) };
    this.children.push(entry);
    return entry;
  }

  async close(): Promise<void> {
    for (const { child } of this.children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await Promise.all(this.children.map(({ child }) => (child.exitCode === null && child.signalCode === null ? finished(child, 5000) : undefined)));
    await this.store?.close();
    await this.telegram?.stop();
    await this.llm.stop();
    await this.vk.stop();
    await this.db?.drop();
    this.fx.cleanup();
  }
}

let updateId = 5000;
/** A Bot API Update with a private text message, as Telegram POSTs it to a webhook. */
function tgUpdate(chat: number, messageId: number, text: string) {
  return {
    update_id: ++updateId,
    message: {
      message_id: messageId,
      date: Math.floor(Date.now() / 1000),
      chat: { id: chat, type: "private", first_name: `U${chat}` },
      from: { id: chat, is_bot: false, first_name: `U${chat}` },
      text,
    },
  };
}

for (const dialect of dialects()) {
  describe(`one ingress: webhooks and callbacks reach any instance, the owner answers (${dialect})`, () => {
    const open: Cluster[] = [];
    after(async () => {
      for (const c of open) await c.close();
    });

    test("Telegram webhooks and VK callbacks sent round-robin to three instances (each also resent to another instance) are answered once each, in order", async () => {
      const c = new Cluster();
      open.push(c);
      await c.setUp(dialect);
      const nodes = [await c.start("i1"), await c.start("i2"), await c.start("i3")];
      await eventually(async () => (await c.store.owners.owners()).filter((o) => o.owner).length === 2, 20_000, "both bots owned");
      const owners = await c.store.owners.owners();
      const idle = nodes.filter((_, i) => !owners.some((o) => o.owner === `i${i + 1}`));
      assert.ok(idle.length >= 1, "at least one instance owns neither bot");

      // VK's confirmation and a wrong secret, at an instance that does not own the bot.
      const vkAt = (n: { port: number }) => `http://127.0.0.1:${n.port}/vk/club-vk`;
      assert.deepEqual(await postCallback(vkAt(idle[0]!), { type: "confirmation", group_id: c.vk.groupId }), { status: 200, text: VK_CONFIRM });
      assert.equal((await postCallback(vkAt(idle[0]!), messageNew({ groupId: c.vk.groupId, peerId: 1, id: 1, text: "x", secret: "wrong" }))).status, 403);

      const chats = [71, 72, 73];
      const rounds = 4;
      let turn = 0;
      const next = () => nodes[turn++ % nodes.length]!;
      for (let i = 0; i < rounds; i++) {
        for (const chat of chats) {
          const u = tgUpdate(chat, 100 + i, `t${chat} m${i}`);
          const post = (n: { port: number }) =>
            fetch(`http://127.0.0.1:${n.port}/tg/hook-tg`, {
              method: "POST",
              headers: { "content-type": "application/json", "x-telegram-bot-api-secret-token": TG_SECRET },
              body: JSON.stringify(u),
            });
          assert.equal((await post(next())).status, 200);
          // Telegram resends when an answer is lost: to whichever instance the balancer picks.
          assert.equal((await post(next())).status, 200);
          const e = messageNew({ groupId: c.vk.groupId, peerId: chat, id: 100 + i, text: `v${chat} m${i}`, secret: VK_SECRET });
          assert.deepEqual(await postCallback(vkAt(next()), e), { status: 200, text: "ok" });
          assert.deepEqual(await postCallback(vkAt(next()), e, { "x-retry-counter": "1" }), { status: 200, text: "ok" });
        }
        // The next message of a chat comes after the answer to this one, as people type.
        await eventually(
          () =>
            chats.every(
              (chat) => botMessages(c.telegram, chat).length === i + 1 && c.vk.sent.filter((s) => Number(s.params.peer_id) === chat).length === i + 1,
            ),
          20_000,
          `round ${i} answered`,
        );
      }
      await new Promise((r) => setTimeout(r, 500));
      for (const chat of chats) {
        assert.deepEqual(
          botMessages(c.telegram, chat).map((m) => m.text),
          [...Array(rounds).keys()].map((i) => `echo: t${chat} m${i}`),
          `telegram chat ${chat}: once each, in order`,
        );
        assert.deepEqual(
          c.vk.sent.filter((s) => Number(s.params.peer_id) === chat).map((s) => s.params.message),
          [...Array(rounds).keys()].map((i) => `echo: v${chat} m${i}`),
          `vk peer ${chat}: once each, in order`,
        );
      }
      const incoming = await c.store.messages.selectIncoming({});
      assert.equal(incoming.length, chats.length * rounds * 2, "each update recorded once (resends deduplicated across instances)");
      assert.ok(incoming.every((m) => m.status === "answered"));
      const balance = (await c.store.balance.get("default"))!.balance;
      assert.equal(await c.store.balance.ledgerSum("default"), balance);
      assert.equal(100_000 - balance, incoming.length * 500, "replies charged = answers sent");
      // Updates recorded by instances that do not own the bot reached the owners through their inbox.
      const logs = readdirSync(c.fx.logDir)
        .map((f) => readFileSync(path.join(c.fx.logDir, f), "utf8"))
        .join("\n");
      assert.match(logs, /inbox: messages recorded elsewhere queued for an answer/);
    });
  });
}
