import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { bin, cli } from "../support/cli.js";
import { createTestDatabase, dialects } from "../support/db.js";
import { Fixture } from "../support/fixture.js";
import { PROMPT_ENV, promptFixture } from "../support/prompt-fixture.js";
import { openStore } from "../../src/storage/index.js";

const BOT = (name: string, extra: string[] = []) =>
  [`name: ${name}`, "channel: tg", "prompt: prompts/p.md", "llm: { model: m, api_key: sk-test-key-123456 }", "tg: { token: '1:a' }", ...extra].join("\n");

describe("messages of the CLI", () => {
  test("a missing channel: is 'required' with the values it takes; problems come by file, then line", async () => {
    const fx = new Fixture();
    try {
      fx.write("prompts/p.md", "hi");
      fx.bot("b-bot", ["name: b-bot", "prompt: prompts/p.md", "llm: { model: m, api_key: sk-test-key-123456 }"].join("\n"));
      // The schema problem (line 4) is found before the prompt file (line 2): printed by line.
      fx.bot(
        "a-bot",
        [
          "name: a-bot",
          "prompt: prompts/missing.md",
          "channel: tg",
          "llm: { model: m, api_key: sk-test-key-123456, temperature: hot }",
          "tg: { token: '1:a' }",
        ].join("\n"),
      );
      const r = await cli(["--config-dir", fx.configDir, "config", "check"]);
      assert.equal(r.code, 2);
      const lines = r.stderr.trim().split("\n").slice(0, -1);
      assert.deepEqual(
        lines.map((l) => l.replace(/^.*configs\//, "").replace(/: .*$/, "")),
        ["a-bot.yaml:2", "a-bot.yaml:4", "b-bot.yaml:1"],
        r.stderr,
      );
      assert.match(r.stderr, /b-bot\.yaml:1: channel: required: one of tg, vk, 2gis\n/);
      assert.doesNotMatch(r.stderr, /Invalid option/);
    } finally {
      fx.cleanup();
    }
  });

  test("a model API that cannot be reached is named by its URL, with the socket's reason", async () => {
    const f = await promptFixture();
    try {
      const url = f.llm.url;
      await f.llm.stop();
      const r = await cli(["--config-dir", f.fx.configDir, "prompt", "test", "shop-tg", "hi"], PROMPT_ENV);
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`model API at ${url.replace(/[.]/g, "\\.")} connection failed: .*\\(ECONNREFUSED\\)`));
    } finally {
      await f.stop();
    }
  });

  test("an unreachable Bot API says its cause once per line", async () => {
    const f = await promptFixture();
    const db = await createTestDatabase("sqlite");
    try {
      const r = await bin(["--config-dir", f.fx.configDir, "--db", db.url, "--log-dir", f.fx.logDir, "start", "--http-port", "off"], PROMPT_ENV, f.fx.root);
      assert.equal(r.code, 1, r.stderr);
      const lines = r.stderr.split("\n").filter((l) => /ECONNREFUSED/.test(l));
      assert.ok(
        lines.some((l) => /Bot API at http:\/\/127\.0\.0\.1:9 is unreachable/.test(l)),
        r.stderr,
      );
      for (const l of lines) assert.equal(l.match(/ECONNREFUSED/g)!.length, 1, l);
    } finally {
      await db.drop();
      await f.stop();
    }
  });

  for (const dialect of dialects()) {
    test(`bots dialogs nosuch exits 2 with 'no bot named' and a guess (${dialect})`, async () => {
      const fx = new Fixture();
      const db = await createTestDatabase(dialect);
      try {
        fx.write("prompts/p.md", "hi");
        fx.bot("shop-tg", BOT("shop-tg"));
        // A bot removed from the configs keeps its conversations.
        const store = await openStore(db.url);
        await store.messages.insertIncoming({
          bot: "old-bot",
          channel: "tg",
          thread_key: "tg:1",
          chat_id: "1",
          user_id: "1",
          user_name: "u",
          text: "hello",
          dedupe_key: "1:1",
          channel_message_id: "1",
          meta: { kind: "messages" },
          status: "received",
          created_ms: Date.now(),
        });
        await store.close();
        const g = ["--config-dir", fx.configDir, "--db", db.url];
        const typo = await cli([...g, "dialogs", "shop-gt"]);
        assert.equal(typo.code, 2);
        assert.match(typo.stderr, /no bot named 'shop-gt' \(did you mean 'shop-tg'\?\)/);
        assert.match(typo.stderr, /hint: bots: old-bot, shop-tg/);
        const none = await cli([...g, "dialogs", "nosuch", "tg:1"]);
        assert.equal(none.code, 2);
        assert.match(none.stderr, /no bot named 'nosuch'\n/);
        const old = await cli([...g, "dialogs", "old-bot"]);
        assert.equal(old.code, 0, old.stderr);
        assert.match(old.stdout, /old-bot\s+tg:1/);
        const configured = await cli([...g, "dialogs", "shop-tg"]);
        assert.equal(configured.code, 0, configured.stderr);
        assert.match(configured.stdout, /No conversations of shop-tg/);
      } finally {
        await db.drop();
        fx.cleanup();
      }
    });
  }
});
