import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { dialects } from "../support/db.js";
import { eventually, Harness, TOKEN } from "../support/harness.js";
import { lastUserText } from "../support/openai-server.js";
import { botMessages, userSays, waitForBotMessages } from "../support/telegram.js";

for (const dialect of dialects()) {
  describe(`bots start tg end to end (${dialect})`, () => {
    test("a message is answered with the model's text, recorded and charged", async () => {
      const h = await Harness.start({ dialect });
      try {
        await userSays(h.telegram, TOKEN, 101, "Сколько стоит доставка?");
        const [reply] = await waitForBotMessages(h.telegram, 101, 1);
        assert.equal(reply!.text, "echo: Сколько стоит доставка?");
        const req = h.llm.requests[0]!;
        assert.equal(req.model, "test-model");
        assert.equal(req.messages[0]!.role, "system");
        assert.match(String(req.messages[0]!.content), /^You are shop-tg\. Now: \d{4}-\d\d-\d\d \d\d:\d\d UTC\.$/);
        assert.equal(req.headers.authorization, "Bearer sk-test-key-123456");
        await eventually(async () => (await h.messages()).length === 2, 5000, "answer stored");
        const [incoming, outgoing] = await h.messages();
        assert.equal(incoming!.status, "answered");
        assert.equal(incoming!.thread_key, "tg:101");
        assert.equal(outgoing!.direction, "out");
        assert.equal(Number(outgoing!.reply_to_id), Number(incoming!.id));
        assert.equal(Number(outgoing!.cost), 500);
        assert.ok(Number(outgoing!.prompt_tokens) > 0);
        assert.equal(await h.balance(), 50000 - 500);
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
      } finally {
        await h.stop();
      }
    });

    test("the second turn carries the first as history; two chats keep separate histories", async () => {
      const h = await Harness.start({ dialect });
      try {
        await userSays(h.telegram, TOKEN, 201, "first from A");
        await waitForBotMessages(h.telegram, 201, 1);
        await userSays(h.telegram, TOKEN, 202, "first from B");
        await waitForBotMessages(h.telegram, 202, 1);
        await userSays(h.telegram, TOKEN, 201, "second from A");
        await waitForBotMessages(h.telegram, 201, 2);
        const last = h.llm.requests.find((r) => lastUserText(r) === "second from A")!;
        assert.deepEqual(
          last.messages.slice(1).map((m) => [m.role, m.content]),
          [
            ["user", "first from A"],
            ["assistant", "echo: first from A"],
            ["user", "second from A"],
          ],
        );
        const b = h.llm.requests.find((r) => lastUserText(r) === "first from B")!;
        assert.equal(b.messages.length, 2, "chat B sees none of chat A");
      } finally {
        await h.stop();
      }
    });
  });
}

for (const dialect of dialects()) {
  describe(`failures and limits (${dialect})`, () => {
    test("no balance: status no_balance, the model is never asked, the empty_reply is sent free", async () => {
      const h = await Harness.start({ dialect, balance: 0, extraYaml: "balance: { empty_reply: 'Сервис временно недоступен' }" });
      try {
        await userSays(h.telegram, TOKEN, 301, "hello?");
        const [reply] = await waitForBotMessages(h.telegram, 301, 1);
        assert.equal(reply!.text, "Сервис временно недоступен");
        assert.equal(h.llm.requests.length, 0);
        // The free reply is stored after it is sent: wait for the pipeline before reading.
        await h.pipeline.onIdle();
        const rows = await h.messages();
        assert.equal(rows[0]!.status, "no_balance");
        assert.equal(Number(rows[1]!.cost), 0);
        assert.equal(await h.balance(), 0);
      } finally {
        await h.stop();
      }
    });

    test("flood and duplicate texts are filtered and recorded, not answered", async () => {
      const h = await Harness.start({ dialect, extraYaml: "spam: { max_per_minute: 3, duplicate_window_s: 60 }" });
      try {
        await userSays(h.telegram, TOKEN, 401, "one");
        await waitForBotMessages(h.telegram, 401, 1);
        await userSays(h.telegram, TOKEN, 401, "one");
        await userSays(h.telegram, TOKEN, 401, "two");
        await userSays(h.telegram, TOKEN, 401, "three");
        await eventually(async () => (await h.messages()).filter((m) => m.direction === "in").length === 4, 5000, "4 incoming stored");
        await h.pipeline.onIdle();
        const incoming = (await h.messages()).filter((m) => m.direction === "in");
        assert.deepEqual(
          incoming.map((m) => [m.text, m.status, m.error]),
          [
            ["one", "answered", null],
            ["one", "filtered", "duplicate"],
            ["two", "answered", null],
            ["three", "filtered", "flood"],
          ],
        );
        assert.deepEqual(
          botMessages(h.telegram, 401).map((m) => m.text),
          ["echo: one", "echo: two"],
        );
        assert.equal(await h.balance(), 50000 - 2 * 500);
      } finally {
        await h.stop();
      }
    });

    test("two transient 500s are retried and the message is answered once", async () => {
      const h = await Harness.start({ dialect });
      try {
        h.llm.script.push({ status: 500 }, { status: 503, headers: { "retry-after": "0" } });
        await userSays(h.telegram, TOKEN, 501, "retry me");
        const [reply] = await waitForBotMessages(h.telegram, 501, 1);
        assert.equal(reply!.text, "echo: retry me");
        assert.equal(h.llm.requests.length, 3);
        await h.pipeline.onIdle();
        assert.equal(await h.balance(), 50000 - 500);
      } finally {
        await h.stop();
      }
    });

    test("a model outage leaves the message failed and uncharged; a 400 is not retried", async () => {
      const h = await Harness.start({ dialect });
      try {
        h.llm.respond = () => ({ status: 502 });
        await userSays(h.telegram, TOKEN, 601, "anyone there?");
        await eventually(async () => (await h.messages())[0]?.status === "failed", 10_000, "failed status");
        assert.equal(h.llm.requests.length, 4, "first try + 3 retries");
        const [row] = await h.messages();
        assert.match(row!.error!, /LLM_UNAVAILABLE.*502/);
        assert.equal(await h.balance(), 50000);
        assert.equal(await h.store.balance.ledgerSum("default"), 50000);
        const ledger = await h.store.balance.history("default", 10);
        assert.deepEqual(
          ledger.map((l) => l.reason),
          ["refund", "reserve", "topup"],
        );
        assert.equal(botMessages(h.telegram, 601).length, 0);

        h.llm.respond = () => ({ status: 400, body: { error: { message: "bad request", type: "invalid_request_error" } } });
        const before = h.llm.requests.length;
        await userSays(h.telegram, TOKEN, 602, "bad");
        await eventually(async () => (await h.messages()).find((m) => m.text === "bad")?.status === "failed", 5000, "400 failed");
        assert.equal(h.llm.requests.length - before, 1, "400 is never retried");
      } finally {
        await h.stop();
      }
    });

    test("a delivery refused by Telegram (403 blocked) refunds the reservation and marks the message failed", async () => {
      let proxy: Awaited<ReturnType<typeof import("../support/botapi-proxy.js").startBotApiProxy>> | undefined;
      const h = await Harness.start({
        dialect,
        apiRoot: async (root) => {
          const { startBotApiProxy } = await import("../support/botapi-proxy.js");
          proxy = await startBotApiProxy(root, (method, body) =>
            method === "sendMessage" && Number(body.chat_id) === 701 ? { error_code: 403, description: "Forbidden: bot was blocked by the user" } : undefined,
          );
          return proxy.url;
        },
      });
      try {
        await userSays(h.telegram, TOKEN, 701, "I blocked you");
        await userSays(h.telegram, TOKEN, 702, "I did not");
        await waitForBotMessages(h.telegram, 702, 1);
        await eventually(async () => (await h.messages()).find((m) => m.text === "I blocked you")?.status === "failed", 5000, "failed");
        const row = (await h.messages()).find((m) => m.text === "I blocked you")!;
        assert.match(row.error!, /403 Forbidden: bot was blocked/);
        assert.equal(proxy!.calls.filter((c) => c === "sendMessage").length, 2, "403 is not retried");
        assert.equal(await h.balance(), 50000 - 500);
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
      } finally {
        await h.stop();
        await proxy?.stop();
      }
    });

    test("one chat's hanging model call does not delay other chats", async () => {
      const h = await Harness.start({ dialect, concurrency: 4 });
      try {
        h.llm.respond = (req) => (lastUserText(req) === "hang" ? { hang: true } : { text: `echo: ${lastUserText(req)}`, delayMs: 50 });
        await userSays(h.telegram, TOKEN, 801, "hang");
        await eventually(() => h.llm.requests.length === 1, 5000, "hanging call started");
        for (let i = 0; i < 6; i++) await userSays(h.telegram, TOKEN, 810 + i, `quick ${i}`);
        for (let i = 0; i < 6; i++) assert.equal((await waitForBotMessages(h.telegram, 810 + i, 1, 5000))[0]!.text, `echo: quick ${i}`);
        assert.equal(botMessages(h.telegram, 801).length, 0, "the hanging chat is still waiting");
      } finally {
        await h.stop();
      }
    });

    test("answers keep each chat's order under load", async () => {
      const h = await Harness.start({ dialect, concurrency: 8, extraYaml: "spam: { max_per_minute: 100 }" });
      try {
        // Later messages answer faster, so any reordering inside a chat would show.
        h.llm.respond = (req) => {
          const n = Number(lastUserText(req).split(" ")[1]);
          return { text: `echo: ${lastUserText(req)}`, delayMs: 40 - n * 6 };
        };
        const chats = [901, 902, 903, 904, 905, 906, 907, 908, 909, 910];
        for (let n = 0; n < 6; n++) await Promise.all(chats.map((c) => userSays(h.telegram, TOKEN, c, `m ${n}`)));
        for (const c of chats) {
          const got = await waitForBotMessages(h.telegram, c, 6, 15_000);
          assert.deepEqual(
            got.map((m) => m.text),
            [0, 1, 2, 3, 4, 5].map((n) => `echo: m ${n}`),
          );
        }
        // Each answer saw every earlier turn of its own chat as history.
        const last = h.llm.requests.find((r) => lastUserText(r) === "m 5")!;
        assert.equal(last.messages.length, 1 + 10 + 1);
      } finally {
        await h.stop();
      }
    });

    test("long answers are split at 4096 characters; /start and /help answer from config", async () => {
      const h = await Harness.start({ dialect, extraYaml: "  commands: { start: 'Привет!', help: 'Спросите что угодно' }".replace(/^/, "") });
      try {
        const long = `${"Слово ".repeat(1000)}\n\n`.repeat(2);
        h.llm.respond = () => ({ text: long });
        const client = h.telegram.getClient(TOKEN, { userId: 1001, chatId: 1001 });
        await client.sendCommand(client.makeCommand("/start"));
        await waitForBotMessages(h.telegram, 1001, 1);
        await client.sendCommand(client.makeCommand("/help"));
        await waitForBotMessages(h.telegram, 1001, 2);
        assert.deepEqual(
          botMessages(h.telegram, 1001).map((m) => m.text),
          ["Привет!", "Спросите что угодно"],
        );
        assert.equal(h.llm.requests.length, 0, "commands do not reach the model");
        await userSays(h.telegram, TOKEN, 1002, "tell me a lot");
        const parts = await waitForBotMessages(h.telegram, 1002, 3);
        assert.ok(parts.every((p) => p.text.length <= 4096));
        assert.equal(
          parts
            .map((p) => p.text)
            .join(" ")
            .replace(/\s+/g, " ")
            .trim(),
          long.replace(/\s+/g, " ").trim(),
        );
      } finally {
        await h.stop();
      }
    });
  });
}
