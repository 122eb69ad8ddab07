import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { registerEnvSecrets, scrubSecrets } from "../../src/secrets.js";
import { cli } from "../support/cli.js";
import { dialects } from "../support/db.js";
import { eventually, Harness, TOKEN } from "../support/harness.js";
import { userSays } from "../support/telegram.js";

/** Not among the harness's log secrets: only the bot config (startBots) makes it known. */
const KEY = "sk-proxy-echoed-key-4242";

test("secret-named environment variables are scrubbed, others are not", () => {
  registerEnvSecrets({ SMTP_PASSWORD: "hunter2-smtp-pass", SHOP_CITY: "Novosibirsk", VK_GROUP_TOKEN: "vk1.a.tokenvalue" });
  assert.equal(scrubSecrets("auth hunter2-smtp-pass / vk1.a.tokenvalue in Novosibirsk"), "auth [REDACTED] / [REDACTED] in Novosibirsk");
});

for (const dialect of dialects()) {
  describe(`stored failure reasons carry no secret (${dialect})`, () => {
    test("a proxy's 401 that echoes the API key: messages.error and bots dialogs show [REDACTED]", async () => {
      const h = await Harness.start({ dialect, env: { OPENAI_API_KEY: KEY } });
      try {
        h.llm.script.push({
          status: 401,
          body: { error: { message: `Incorrect API key provided: ${KEY}. Bot ${TOKEN} at proxy`, type: "invalid_request_error" } },
        });
        await userSays(h.telegram, TOKEN, 901, "hello");
        const row = (await eventually(
          async () => (await h.messages()).find((m) => m.direction === "in" && m.status === "failed"),
          10_000,
          "the message failed",
        ))!;
        assert.match(row.error!, /401/);
        assert.ok(!row.error!.includes(KEY), row.error!);
        assert.match(row.error!, /Incorrect API key provided: \[REDACTED\]/);
        const shown = await cli(["--config-dir", h.fixture.configDir, "--db", h.db.url, "dialogs", "shop-tg", "tg:901"], {
          OPENAI_API_KEY: KEY,
          TG_TOKEN: TOKEN,
        });
        assert.equal(shown.code, 0, shown.stderr);
        assert.match(shown.stdout, /\[REDACTED\]/);
        assert.ok(!shown.stdout.includes(KEY));
      } finally {
        await h.stop();
      }
    });
  });
}
