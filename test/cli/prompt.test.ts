import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { openStore } from "../../src/storage/index.js";
import { bin, cli } from "../support/cli.js";
import { createTestDatabase, dialects } from "../support/db.js";
import { PROMPT_ENV, promptFixture } from "../support/prompt-fixture.js";

for (const dialect of dialects()) {
  describe(`bots prompt test (${dialect})`, () => {
    test("prints the answer, tokens, cost and latency, and writes nothing to the database", async () => {
      const f = await promptFixture();
      const db = await createTestDatabase(dialect);
      const store = await openStore(db.url);
      try {
        await store.balance.topUp("default", 1000);
        const g = ["--config-dir", f.fx.configDir, "--db", db.url, "--log-dir", f.fx.logDir];
        const r = await cli([...g, "prompt", "test", "shop-tg", "Сколько", "стоит", "доставка?"], PROMPT_ENV);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^echo: Сколько стоит доставка\?\ntest-model · \d+ prompt \+ \d+ completion tokens · 2\.50 credits · \d+ ms\n$/);
        const j = await cli([...g, "--json", "prompt", "test", "shop-tg", "hi"], PROMPT_ENV);
        const o = JSON.parse(j.stdout) as Record<string, unknown>;
        assert.equal(o.text, "echo: hi");
        assert.equal(o.cost, "2.50");
        assert.equal(o.cost_hundredths, 250);
        assert.equal(f.llm.requests.length, 2);
        assert.equal((await store.database.db.selectFrom("messages").select("id").execute()).length, 0);
        assert.equal((await store.balance.get("default"))!.balance, 1000);
        assert.equal((await store.balance.history("default", 10)).length, 1, "only the top-up");
      } finally {
        await store.close();
        await db.drop();
        await f.stop();
      }
    });
  });
}

describe("bots prompt test: cases and usage", () => {
  test("a cases file with one failing expectation exits 1 and names it", async () => {
    const f = await promptFixture();
    try {
      const cases = f.fx.write(
        "cases.yaml",
        [
          "- name: delivery",
          "  message: Сколько стоит доставка?",
          "  contains: доставка",
          "- name: no refusal",
          "  message: Есть самовывоз?",
          "  not_contains: [самовывоз]",
          "  max_chars: 600",
        ].join("\n"),
      );
      const r = await cli(["--config-dir", f.fx.configDir, "prompt", "test", "shop-tg", "--cases", cases], PROMPT_ENV);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stdout, /RESULT +CASE +FAILED EXPECTATION/);
      assert.match(r.stdout, /pass +delivery/);
      assert.match(r.stdout, /FAIL +no refusal +not_contains "самовывоз"/);
      assert.match(r.stdout, /1 of 2 cases failed/);
      const ok = f.fx.write("ok.yaml", ["- message: hi", "  contains: HI"].join("\n"));
      const passed = await cli(["--config-dir", f.fx.configDir, "--json", "prompt", "test", "shop-tg", "--cases", ok], PROMPT_ENV);
      assert.equal(passed.code, 0);
      assert.deepEqual((JSON.parse(passed.stdout) as { passed: number; failed: number }).failed, 0);
    } finally {
      await f.stop();
    }
  });

  test("usage errors exit 2: unknown bot, no message, broken cases file, --interactive without a terminal", async () => {
    const f = await promptFixture();
    try {
      const g = ["--config-dir", f.fx.configDir, "prompt", "test"];
      const unknown = await cli([...g, "nope", "hi"], PROMPT_ENV);
      assert.equal(unknown.code, 2);
      assert.match(unknown.stderr, /no bot named 'nope'\n.*hint: bots: shop-tg/);
      assert.equal((await cli([...g, "shop-tg"], PROMPT_ENV)).code, 2);
      assert.equal((await cli([...g, "shop-tg", "--interactive"], PROMPT_ENV)).code, 2);
      const broken = f.fx.write("broken.yaml", "- message: hi\n");
      const b = await cli([...g, "shop-tg", "--cases", broken], PROMPT_ENV);
      assert.equal(b.code, 2);
      assert.match(b.stderr, /broken\.yaml:1: cases\[0\]: no expectation/);
      assert.equal(f.llm.requests.length, 0);
    } finally {
      await f.stop();
    }
  });

  test("through bin/bots.js: an answer, and --help with examples", async () => {
    const f = await promptFixture();
    try {
      const r = await bin(["--config-dir", f.fx.configDir, "prompt", "test", "shop-tg", "Привет"], PROMPT_ENV);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^echo: Привет\n/);
      const help = await bin(["prompt", "test", "--help"]);
      assert.match(help.stdout, /--cases <file>/);
      assert.match(help.stdout, /bots prompt test shop-tg --cases/);
    } finally {
      await f.stop();
    }
  });
});
