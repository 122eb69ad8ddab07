import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { dialects } from "../support/db.js";
import { eventually, Harness } from "../support/harness.js";
import { waitForBotMessages } from "../support/telegram.js";

for (const dialect of dialects()) {
  describe(`Telegram webhook mode (${dialect})`, () => {
    test("registers the webhook, refuses a wrong secret token with 403, answers a real update once", async () => {
      const h = await Harness.start({
        dialect,
        extraYaml: ["  mode: webhook", "  webhook:", "    url: https://bots.example.org/chat/", "    secret_token: s3cr3t-token_value"].join("\n"),
      });
      const port = h.httpPort;
      try {
        const registered = (h.telegram as unknown as { webhooks: Record<string, { url: string }> }).webhooks;
        assert.equal(Object.values(registered)[0]?.url, "https://bots.example.org/chat/tg/shop-tg", "setWebhook got <tg.webhook.url>/tg/<bot>");
        assert.equal((await fetch(`http://127.0.0.1:${port}/tg/other-bot`, { method: "POST", body: "{}" })).status, 404, "no such bot");
        assert.equal(
          (
            await fetch(`http://127.0.0.1:${port}/tg/shop-tg`, {
              method: "POST",
              headers: { "x-telegram-bot-api-secret-token": "s3cr3t-token_value" },
              body: "not json",
            })
          ).status,
          400,
          "a body that is no Update",
        );
        const update = {
          update_id: 77,
          message: {
            message_id: 5,
            date: Math.floor(Date.now() / 1000),
            chat: { id: 4242, type: "private", first_name: "Ann" },
            from: { id: 4242, is_bot: false, first_name: "Ann" },
            text: "через вебхук",
          },
        };
        const post = (headers: Record<string, string>) =>
          fetch(`http://127.0.0.1:${port}/tg/shop-tg`, {
            method: "POST",
            headers: { "content-type": "application/json", ...headers },
            body: JSON.stringify(update),
          });
        assert.equal((await post({})).status, 403);
        assert.equal((await post({ "x-telegram-bot-api-secret-token": "wrong" })).status, 403);
        assert.equal((await h.messages()).length, 0, "nothing recorded for a refused request");
        assert.equal((await post({ "x-telegram-bot-api-secret-token": "s3cr3t-token_value" })).status, 200);
        assert.equal((await post({ "x-telegram-bot-api-secret-token": "s3cr3t-token_value" })).status, 200, "a redelivery is acknowledged");
        const [reply] = await waitForBotMessages(h.telegram, 4242, 1);
        assert.equal(reply!.text, "echo: через вебхук");
        await eventually(async () => (await h.messages()).length === 2, 5000, "stored");
        assert.equal((await h.messages()).filter((m) => m.direction === "in").length, 1, "the redelivered update was deduplicated");
        assert.equal(h.llm.requests.length, 1);
      } finally {
        await h.stop();
      }
    });
  });
}
