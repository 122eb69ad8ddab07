import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { describe, test } from "node:test";
import { openStore } from "../../src/storage/index.js";
import { terminalSafe } from "../../src/terminal.js";
import { cli } from "../support/cli.js";
import { createTestDatabase, dialects } from "../support/db.js";
import { Fixture } from "../support/fixture.js";

const ENV = { OPENAI_API_KEY: "sk-test-key-123456", TG_TOKEN: "123456:TEST-token_abcdef" };
/** Clear screen, home, a forged line, OSC 52 (write the clipboard), a bell, 8-bit CSI, DEL. */
const HOSTILE = "hi\u001b[2J\u001b[H\rforged: ok\u001b]52;c;cm0gLXJmIH4=\u0007\u009b31m\u007f";
/** Any control character a terminal acts on (tab and newline are fine). */
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

test("terminalSafe shows controls as \\xNN and keeps text, tabs and newlines", () => {
  assert.equal(terminalSafe("a\tb\nc\u001b[2Jd\u009be\rf"), "a\tb\nc\\x1b[2Jd\\x9be\\x0df");
  assert.equal(terminalSafe("Привет 👋"), "Привет 👋");
});

for (const dialect of dialects()) {
  describe(`CLI output of outside text is inert on a terminal (${dialect})`, () => {
    test("bots dialogs, bots logs tail and bots status print no control characters from users, logs or config files", async () => {
      const fx = new Fixture();
      fx.write("prompts/p.md", "x");
      fx.bot(
        "shop-tg",
        ["channel: tg", "prompt: prompts/p.md", "llm:", "  model: m", "  api_key: ${OPENAI_API_KEY}", "tg:", "  token: ${TG_TOKEN}"].join("\n"),
      );
      // A key name quoted by the problem message ("\e" is ESC in a YAML double-quoted string).
      fx.bot("broken", ["channel: tg", "prompt: prompts/p.md", "llm: { model: m, api_key: k }", "tg: { token: t }", '"\\e[2Jevil": 1'].join("\n"));
      const db = await createTestDatabase(dialect);
      const store = await openStore(db.url);
      const run = (...args: string[]) => cli(["--config-dir", fx.configDir, "--db", db.url, "--log-dir", fx.logDir, ...args], ENV);
      try {
        const id = (await store.messages.insertIncoming({
          bot: "shop-tg",
          channel: "tg",
          thread_key: "tg:42",
          chat_id: "42",
          user_id: "42",
          user_name: `Eve${HOSTILE}`,
          text: HOSTILE,
          dedupe_key: "42:1",
          channel_message_id: "1",
          meta: null,
          status: "received",
          created_ms: Date.now(),
        }))!;
        await store.messages.setStatus(id, "failed", { error: `model said ${HOSTILE}` });
        for (const args of [["dialogs"], ["dialogs", "shop-tg", "tg:42"]]) {
          const r = await run(...args);
          assert.equal(r.code, 0, r.stderr);
          assert.doesNotMatch(r.stdout, CONTROL, args.join(" "));
          assert.match(r.stdout, /Eve.*\\x1b\[2J/, args.join(" "));
        }

        mkdirSync(fx.logDir, { recursive: true });
        writeFileSync(
          `${fx.logDir}/shop-tg.log`,
          `${JSON.stringify({ level: "info", time: new Date().toISOString(), bot: "shop-tg", thread_key: "tg:42", msg: "message received", text: HOSTILE, user_name: HOSTILE })}\nnot json ${HOSTILE}\n`,
        );
        for (const args of [
          ["logs", "tail", "shop-tg"],
          ["--json", "logs", "tail", "shop-tg"],
        ]) {
          const r = await run(...args);
          assert.equal(r.code, 0, r.stderr);
          assert.doesNotMatch(r.stdout, CONTROL, args.join(" "));
          assert.match(r.stdout, /not json hi\\x1b\[2J/, args.join(" "));
        }

        const status = await run("status");
        assert.match(status.stdout, /\\x1b\[2Jevil/);
        assert.doesNotMatch(status.stdout, CONTROL);
      } finally {
        await store.close();
        await db.drop();
        fx.cleanup();
      }
    });
  });
}
