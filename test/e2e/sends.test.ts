import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { cli } from "../support/cli.js";
import { dialects } from "../support/db.js";
import { eventually, Harness, TOKEN } from "../support/harness.js";
import { startBotApiProxy, type Intercept } from "../support/botapi-proxy.js";
import { lastUserText } from "../support/openai-server.js";
import { ENV, globals } from "../support/replay-fixture.js";
import { botMessages, userSays } from "../support/telegram.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";
import { VK_SECRET, VkHarness } from "../support/vk-harness.js";
import { messageNew, postCallback } from "../support/vk-server.js";

/** A harness whose Bot API calls pass through a proxy deciding with `intercept`. */
async function proxied(dialect: "sqlite" | "mysql", intercept: Intercept): Promise<{ h: Harness; proxy: Awaited<ReturnType<typeof startBotApiProxy>> }> {
  let proxy: Awaited<ReturnType<typeof startBotApiProxy>> | undefined;
  const h = await Harness.start({
    dialect,
    apiRoot: async (root) => {
      proxy = await startBotApiProxy(root, intercept);
      return proxy.url;
    },
  });
  return { h, proxy: proxy! };
}

/** Five paragraphs of 4000 characters: Telegram's 4096 limit splits them into exactly five parts. */
function fiveParts(): string {
  return [1, 2, 3, 4, 5].map((n) => `Part ${n}: ${"x".repeat(3990)}`.slice(0, 4000)).join("\n\n");
}

/** Waits until the incoming row with `text` has left the statuses of an answer in progress; returns that status. */
async function settledStatus(h: Harness, text: string): Promise<string> {
  return eventually(
    async (): Promise<string | undefined> => {
      const status = (await h.messages()).find((m) => m.direction === "in" && m.text === text)?.status;
      return status && !["received", "sending", "delivering"].includes(status) ? status : undefined;
    },
    20_000,
    `'${text}' settled`,
  ) as Promise<string>;
}

/** The incoming row with `text`, and the ledger rows of its message. */
async function rowAndLedger(h: Harness, text: string) {
  const row = (await h.messages()).find((m) => m.direction === "in" && m.text === text)!;
  const ledger = await h.store.database.db.selectFrom("balance_ledger").selectAll().where("message_id", "=", row.id).orderBy("id").execute();
  return { row, ledger: ledger.map((l) => ({ reason: l.reason, delta: Number(l.delta) })) };
}

for (const dialect of dialects()) {
  describe(`sends that may have arrived are never repeated (${dialect})`, () => {
    test("a socket dropped after the Bot API read sendMessage: one POST, unconfirmed, charged; replay --send skips it, --force sends it", async () => {
      const posts: number[] = [];
      let dropped = 0;
      const { h, proxy } = await proxied(dialect, (method, body) => {
        if (method !== "sendMessage" || Number(body.chat_id) !== 901) return undefined;
        posts.push(901);
        return dropped++ === 0 ? "drop" : undefined;
      });
      try {
        await userSays(h.telegram, TOKEN, 901, "hello");
        assert.equal(await settledStatus(h, "hello"), "unconfirmed");
        // Nothing more comes: the answer is never retried by itself.
        await userSays(h.telegram, TOKEN, 902, "another chat");
        assert.equal(await settledStatus(h, "another chat"), "answered");
        assert.equal(posts.length, 1, "exactly one sendMessage for the dropped answer");
        const { row, ledger } = await rowAndLedger(h, "hello");
        assert.match(row.error!, /may have arrived/);
        assert.ok(!row.error!.includes(TOKEN), "the token is not stored with the reason");
        assert.equal(row.cost, 500, "the charge stands");
        assert.deepEqual(ledger, [{ reason: "reserve", delta: -500 }]);
        assert.equal(await h.balance(), 50000 - 1000);
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
        await h.running!.stop(2000);
        h.running = undefined;

        const again = await cli([...globals(h), "replay", "--send", "--since", "1h"], ENV);
        assert.equal(again.code, 0, again.stderr + again.stdout);
        assert.equal(posts.length, 1, "replay --send does not send an unconfirmed answer");
        assert.equal((await rowAndLedger(h, "hello")).row.status, "unconfirmed");

        const forced = await cli([...globals(h), "replay", "--send", "--force", "--status", "unconfirmed", "--since", "1h"], ENV);
        assert.equal(forced.code, 0, forced.stderr + forced.stdout);
        assert.equal(posts.length, 2, "--force sends it");
        assert.deepEqual(
          botMessages(h.telegram, 901).map((m) => m.text),
          ["echo: hello"],
        );
        assert.equal((await rowAndLedger(h, "hello")).row.status, "answered");
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
        void proxy;
      } finally {
        await h.stop();
        await proxy.stop();
      }
    });

    test("an answer in 5 parts with part 4 refused: parts 1-3 recorded delivered and charged; replay --send sends parts 4-5 only, without the model", async () => {
      let toChat = 0;
      const { h, proxy } = await proxied(dialect, (method, body) => {
        if (method !== "sendMessage" || Number(body.chat_id) !== 903) return undefined;
        toChat++;
        return toChat === 4 ? { error_code: 400, description: "Bad Request: message is too long" } : undefined;
      });
      const text = fiveParts();
      try {
        h.llm.respond = (req) => (lastUserText(req) === "long please" ? { text } : { text: `echo: ${lastUserText(req)}` });
        await userSays(h.telegram, TOKEN, 903, "long please");
        assert.equal(await settledStatus(h, "long please"), "partial");
        const { row, ledger } = await rowAndLedger(h, "long please");
        assert.equal(Number(row.parts_sent), 3);
        assert.match(row.error!, /400 Bad Request/);
        assert.equal(row.cost, 500, "some parts delivered: the charge stands");
        assert.deepEqual(ledger, [{ reason: "reserve", delta: -500 }]);
        assert.deepEqual(
          botMessages(h.telegram, 903).map((m) => m.text.slice(0, 6)),
          ["Part 1", "Part 2", "Part 3"],
        );
        assert.equal(toChat, 4, "a 400 is not retried");
        const modelCalls = h.llm.requests.length;
        await h.running!.stop(2000);
        h.running = undefined;

        const status = await cli([...globals(h), "status"], ENV);
        assert.match(status.stdout, /1 answer\(s\) partly delivered/);
        const dialogs = await cli([...globals(h), "dialogs", "shop-tg", "tg:903", "--no-pager"], ENV);
        assert.match(dialogs.stdout, /partial · parts 3 of 5 delivered/);

        const r = await cli([...globals(h), "replay", "--send", "--since", "1h"], ENV);
        assert.equal(r.code, 0, r.stderr + r.stdout);
        assert.deepEqual(
          botMessages(h.telegram, 903).map((m) => m.text.slice(0, 6)),
          ["Part 1", "Part 2", "Part 3", "Part 4", "Part 5"],
        );
        assert.equal(h.llm.requests.length, modelCalls, "the same text: the model is not asked again");
        const after = await rowAndLedger(h, "long please");
        assert.equal(after.row.status, "answered");
        assert.equal(Number(after.row.parts_sent), 5);
        assert.deepEqual(after.ledger, [{ reason: "reserve", delta: -500 }], "charged once");
        const answer = (await h.messages()).find((m) => m.direction === "out" && m.reply_to_id === after.row.id)!;
        assert.equal(answer.text, text);
        assert.equal(answer.cost, 500);
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
        const second = await cli([...globals(h), "replay", "--send", "--since", "1h"], ENV);
        assert.equal(second.code, 0);
        assert.equal(botMessages(h.telegram, 903).length, 5, "nothing more");
      } finally {
        await h.stop();
        await proxy.stop();
      }
    });

    test("part 1 of 5 refused: nothing delivered, failed and refunded (a replay sends the whole answer)", async () => {
      let toChat = 0;
      const { h, proxy } = await proxied(dialect, (method, body) => {
        if (method !== "sendMessage" || Number(body.chat_id) !== 904) return undefined;
        toChat++;
        return toChat === 1 ? { error_code: 400, description: "Bad Request: chat not found" } : undefined;
      });
      try {
        h.llm.respond = () => ({ text: fiveParts() });
        await userSays(h.telegram, TOKEN, 904, "long again");
        assert.equal(await settledStatus(h, "long again"), "failed");
        const { ledger } = await rowAndLedger(h, "long again");
        assert.deepEqual(ledger, [
          { reason: "reserve", delta: -500 },
          { reason: "refund", delta: 500 },
        ]);
        assert.equal(await h.balance(), 50000);
      } finally {
        await h.stop();
        await proxy.stop();
      }
    });

    test("VK: a messages.send whose reply is lost after VK handled it: one call (vk-io's queue carries the mark), unconfirmed, charged", async () => {
      let proxy: TcpProxy | undefined;
      const h = await VkHarness.start({
        dialect,
        apiBaseUrl: async (url) => {
          const u = new URL(url);
          proxy = await startTcpProxy(u.hostname, Number(u.port));
          return url.replace(u.host, `127.0.0.1:${proxy.port}`);
        },
      });
      try {
        proxy!.dropReplyTo("messages.send");
        await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 801, id: 1, text: "привет", secret: VK_SECRET }));
        await eventually(async () => !["received", "sending", "delivering"].includes((await h.messages())[0]?.status ?? "received"), 10_000, "settled");
        await h.pipeline.onIdle();
        const [row] = await h.messages();
        // `unconfirmed` is only written from `delivering`: the mark went through vk-io's queue.
        assert.equal(row!.status, "unconfirmed");
        assert.equal(proxy!.droppedReplies, 1);
        assert.equal(h.vk.callsOf("messages.send").length, 1, "not retried");
        assert.equal(row!.cost, 500);
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
        assert.equal(await h.balance(), 50000 - 500);
      } finally {
        await h.stop();
        await proxy?.close();
      }
    });

    test("a process that died between parts (`sending`, 2 of 5 parts delivered): the next start sends parts 3-5 of the same text, charged once", async () => {
      const h = await Harness.start({ dialect, start: false });
      try {
        const text = fiveParts();
        const id = (await h.store.messages.insertIncoming({
          bot: "shop-tg",
          channel: "tg",
          thread_key: "tg:905",
          chat_id: "905",
          user_id: "905",
          user_name: null,
          text: "long",
          dedupe_key: "905:1",
          channel_message_id: "1",
          meta: { kind: "messages" },
          status: "received",
          created_ms: Date.now(),
        }))!;
        assert.ok(await h.store.balance.reserve("default", 500, 0, id));
        await h.store.messages.setStatus(id, "sending");
        assert.ok(
          await h.store.messages.markWriting(id, 0, {
            delivery: { text, parts: 5, model: "test-model", prompt_tokens: 10, completion_tokens: 5000, latency_ms: 7 },
          }),
        );
        assert.ok(await h.store.messages.unmarkWriting(id, 2));
        await h.startBots();
        await eventually(async () => (await rowAndLedger(h, "long")).row.status === "answered", 10_000, "answered");
        assert.deepEqual(
          botMessages(h.telegram, 905).map((m) => m.text.slice(0, 6)),
          ["Part 3", "Part 4", "Part 5"],
        );
        assert.equal(h.llm.requests.length, 0, "the model is not asked again");
        const { row, ledger } = await rowAndLedger(h, "long");
        assert.equal(Number(row.parts_sent), 5);
        assert.deepEqual(ledger, [{ reason: "reserve", delta: -500 }], "the reservation stands, not refunded nor taken again");
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
      } finally {
        await h.stop();
      }
    });
  });
}
