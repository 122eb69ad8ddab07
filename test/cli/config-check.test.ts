import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { addBalance } from "../../src/cli/balance.js";
import { resolveContext } from "../../src/cli/context.js";
import { openStore } from "../../src/storage/index.js";
import { runBots } from "../support/cli.js";
import { createTestDatabase, dialects } from "../support/db.js";
import { Fixture } from "../support/fixture.js";
import { ScriptedTerminal } from "../support/terminal.js";

describe("bots config check through bin/bots.js", () => {
  test("a prompt must be a regular file of at most 256 KB: /dev/zero, a folder and a big file are refused with file:line: field; bots prompt test refuses too", async () => {
    const fx = new Fixture();
    try {
      fx.write("prompts/p.md", "x");
      fx.write("prompts/big.md", "y".repeat(256 * 1024 + 1));
      fx.write("prompts/edge.md", "z".repeat(256 * 1024));
      const bot = (name: string, prompt: string) =>
        fx.bot(name, ["channel: tg", "llm: { model: m, api_key: k }", "tg: { token: '1:x' }", `prompt: ${prompt}`].join("\n"));
      bot("zero", "/dev/zero");
      bot("folder", "prompts");
      bot("big", "prompts/big.md");
      bot("edge", "prompts/edge.md");
      bot("mapped", "{ messages: prompts/p.md, comments: /dev/zero }");
      const r = await runBots(["config", "check"], { cwd: fx.root });
      assert.equal(r.code, 2);
      const lines = r.stderr.trim().split("\n");
      assert.ok(lines.includes("configs/zero.yaml:4: prompt: prompt file /dev/zero is not a regular file (a prompt is a text file)"), r.stderr);
      assert.ok(lines.includes("configs/folder.yaml:4: prompt: prompt file prompts is not a regular file (a prompt is a text file)"), r.stderr);
      assert.ok(lines.includes("configs/big.yaml:4: prompt: prompt file prompts/big.md is 257 KB; a prompt file may have at most 256 KB"), r.stderr);
      assert.ok(
        lines.some((l) => l.startsWith("configs/mapped.yaml:4: prompt.comments: prompt file /dev/zero is not a regular file")),
        r.stderr,
      );
      assert.ok(!lines.some((l) => l.includes("edge.yaml")), "256 KB exactly is allowed");
      // The bot loads the file again when it answers: a file that became too large since is refused there too.
      fx.write("prompts/edge.md", "z".repeat(300 * 1024));
      const { loadPrompt } = await import("../../src/llm/prompt.js");
      assert.throws(
        () => loadPrompt({ name: "edge", prompt: "prompts/edge.md", root: fx.root }),
        /prompt file .*edge\.md of bot edge cannot be read: larger than 256 KB/,
      );
      assert.throws(() => loadPrompt({ name: "zero", prompt: "/dev/zero", root: fx.root }), /cannot be read: not a regular file/);
      assert.equal(loadPrompt({ name: "p", prompt: "prompts/p.md", root: fx.root }), "x");
    } finally {
      fx.cleanup();
    }
  });

  test("every problem at once as file:line: field: message, exit 2; then a table and exit 0", async () => {
    const fx = new Fixture();
    try {
      fx.write("prompts/p.md", "x");
      fx.bot(
        "shop-tg",
        ["channel: tg", "prompt: prompts/p.md", "llm:", "  model: m", "  api_key: ${OPENAI_API_KEY}", "  temprature: 0.3", "tg:", "  token: '1:x'"].join("\n"),
      );
      fx.bot(
        "club-vk",
        ["channel: vk", "prompt: prompts/gone.md", "llm: { model: m, api_key: k, concurrency: lots }", "vk: { token: t, group_id: 1, mode: longpoll }"].join(
          "\n",
        ),
      );
      fx.bot("broken", "channel: tg\nllm: [unclosed\n");
      let r = await runBots(["config", "check"], { cwd: fx.root });
      assert.equal(r.code, 2);
      const lines = r.stderr.trim().split("\n");
      assert.ok(
        lines.includes("configs/shop-tg.yaml:5: llm.api_key: environment variable OPENAI_API_KEY is not set (add it to .env or the environment)"),
        r.stderr,
      );
      assert.ok(
        lines.some((l) => /^configs\/broken\.yaml:\d+: YAML: /.test(l)),
        r.stderr,
      );
      assert.ok(
        lines.some((l) => /^configs\/club-vk\.yaml:3: llm\.concurrency: /.test(l)),
        r.stderr,
      );
      assert.ok(
        lines.some((l) => /^configs\/club-vk\.yaml:2: prompt: prompt file prompts\/gone\.md not found/.test(l)),
        r.stderr,
      );
      assert.match(lines.at(-1)!, /problems? in 3 file\(s\)/);

      fx.bot(
        "shop-tg",
        ["channel: tg", "prompt: prompts/p.md", "llm:", "  model: m", "  api_key: ${OPENAI_API_KEY}", "  temprature: 0.3", "tg:", "  token: '1:x'"].join("\n"),
      );
      fx.bot(
        "club-vk",
        [
          "channel: vk",
          "prompt: prompts/p.md",
          "llm: { model: gpt-x, api_key: k }",
          "balance: { account: club }",
          "vk: { token: t, group_id: 1, mode: longpoll }",
        ].join("\n"),
      );
      fx.bot("broken", ["channel: tg", "enabled: false", "prompt: prompts/p.md", "llm: { model: m, api_key: k }", "tg: { token: '1:x' }"].join("\n"));
      r = await runBots(["config", "check"], { cwd: fx.root, env: { OPENAI_API_KEY: "k" } });
      assert.equal(r.code, 2);
      assert.match(r.stderr, /configs\/shop-tg\.yaml:6: llm\.temprature: unknown key \(did you mean 'temperature'\?\)/);

      fx.bot("shop-tg", ["channel: tg", "prompt: prompts/p.md", "llm: { model: m, api_key: '${OPENAI_API_KEY}' }", "tg: { token: '1:x' }"].join("\n"));
      r = await runBots(["config", "check"], { cwd: fx.root, env: { OPENAI_API_KEY: "k" } });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /NAME\s+CHANNEL\s+ENABLED\s+MODEL\s+ACCOUNT/);
      assert.match(r.stdout, /broken\s+tg\s+no\s+m\s+default/);
      assert.match(r.stdout, /club-vk\s+vk\s+yes\s+gpt-x\s+club/);
      assert.match(r.stdout, /3 bots OK/);
      const j = await runBots(["config", "check", "--json"], { cwd: fx.root, env: { OPENAI_API_KEY: "k" } });
      const parsed = JSON.parse(j.stdout) as { ok: boolean; bots: Array<{ name: string }> };
      assert.equal(parsed.ok, true);
      assert.deepEqual(parsed.bots.map((b) => b.name).sort(), ["broken", "club-vk", "shop-tg"]);
    } finally {
      fx.cleanup();
    }
  });
});

for (const dialect of dialects()) {
  describe(`bots balance add on a terminal (${dialect})`, () => {
    test("asks to confirm: 'n' writes nothing, Enter (yes by default) tops up", async () => {
      const fx = new Fixture();
      const db = await createTestDatabase(dialect);
      const out: string[] = [];
      const io = {
        stdout: { write: (s: string) => out.push(s), isTTY: true },
        stderr: { write: (s: string) => out.push(s), isTTY: true },
        stdinIsTTY: true,
        env: { PATH: process.env.PATH ?? "" },
      };
      const c = resolveContext({ db: db.url, configDir: fx.configDir }, io);
      try {
        assert.equal(c.interactive, true);
        const no = new ScriptedTerminal([[/Add 12\.50 credits to account 'client-a'\?/, "n\r"]]);
        await addBalance(c, "12,5", { account: "client-a", newAccount: true }, no.context);
        assert.match(out.join(""), /Cancelled; nothing written\./);
        const yes = new ScriptedTerminal([[/Add 12\.50 credits to account 'client-a'\?/, "\r"]]);
        await addBalance(c, "12,5", { account: "client-a", newAccount: true }, yes.context);
        assert.equal(yes.remaining, 0);
        const store = await openStore(db.url);
        try {
          assert.equal((await store.balance.get("client-a"))!.balance, 1250);
          assert.equal((await store.balance.history("client-a", 10)).length, 1);
        } finally {
          await store.close();
        }
      } finally {
        await db.drop();
        fx.cleanup();
      }
    });
  });
}
