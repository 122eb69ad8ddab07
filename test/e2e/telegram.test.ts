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
