import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { LlmClient } from "../../src/llm/client.js";
import { chatSession, checkExpectations, loadCases, promptAnswer, runCases } from "../../src/cli/prompt-test.js";
import { ConfigError } from "../../src/errors.js";
import { llmFor } from "../../src/runner.js";
import { createLogging } from "../../src/logging.js";
import { lastUserText } from "../support/openai-server.js";
import { promptFixture } from "../support/prompt-fixture.js";

const logger = createLogging({ console: false }).root;

describe("prompt test (cli/prompt-test.ts)", () => {
  test("one answer with tokens, the bot's cost and latency; tool calls are shown and never run", async () => {
    const { bot, llm, stop } = await promptFixture();
    try {
      llm.script.push({ toolCalls: [{ name: "save_lead", arguments: { phone: "+7 900 000-00-00" } }] });
      let ran = 0;
      const tools = [
        {
          name: "save_lead",
          description: "save a lead",
          parameters: { type: "object", properties: { phone: { type: "string" } } },
          run: async () => String(++ran),
        },
      ];
      const a = await promptAnswer(
        { bot, llm: llmFor(bot, logger), tools, now: () => Date.UTC(2026, 10, 21, 9, 30) },
        [
          { role: "user", text: "hi" },
          { role: "assistant", text: "hello" },
        ],
        "Мой телефон +7 900 000-00-00",
      );
      assert.equal(a.text, "echo: Мой телефон +7 900 000-00-00");
      assert.equal(ran, 0, "the tool was not executed");
      assert.deepEqual(a.tool_calls, [{ name: "save_lead", arguments: '{"phone":"+7 900 000-00-00"}', result: null }]);
      assert.equal(a.cost, 250);
      assert.ok(a.prompt_tokens > 0 && a.completion_tokens > 0);
      assert.ok(a.latency_ms >= 0);
      const req = llm.requests[0]!;
      assert.deepEqual(
        req.messages.map((m) => [m.role, m.content]),
        [
          ["system", "You are shop-tg, a shop assistant."],
          ["user", "hi"],
          ["assistant", "hello"],
          ["user", "Мой телефон +7 900 000-00-00"],
        ],
      );
      assert.deepEqual(llm.requests[1]!.messages.at(-1), { role: "tool", tool_call_id: "call_1_0", content: "ok (not executed: test mode)" });
    } finally {
      await stop();
    }
  });

  test("--prompt FILE replaces the system prompt", async () => {
    const { bot, llm, fx, stop } = await promptFixture();
    try {
      const file = fx.write("prompts/v2.md", "Version two for {{bot_name}}.");
      await promptAnswer({ bot, llm: llmFor(bot, logger), promptFile: file }, [], "x");
      assert.equal(llm.requests[0]!.messages[0]!.content, "Version two for shop-tg.");
      await assert.rejects(promptAnswer({ bot, llm: llmFor(bot, logger), promptFile: `${fx.root}/missing.md` }, [], "x"), ConfigError);
    } finally {
      await stop();
    }
  });

  test("a chat keeps its history, /reset forgets it, /exit ends; a failed answer does not end it", async () => {
    const { bot, llm, stop } = await promptFixture();
    try {
      const lines = ["first", "second", "/reset", "boom", "third", "/exit", "never"];
      llm.respond = (req) => (lastUserText(req) === "boom" ? { status: 400 } : { text: `echo: ${lastUserText(req)}` });
      const events: string[] = [];
      const n = await chatSession(
        { bot, llm: new LlmClient({ ...llmFor(bot, logger).options }) },
        async () => lines.shift() ?? null,
        (e) => events.push("answer" in e ? e.answer.text : "error" in e ? "error" : "reset"),
      );
      assert.equal(n, 3);
      assert.deepEqual(events, ["echo: first", "echo: second", "reset", "error", "echo: third"]);
      assert.deepEqual(
        llm.requests[1]!.messages.slice(1).map((m) => m.content),
        ["first", "echo: first", "second"],
      );
      assert.deepEqual(
        llm.requests
          .at(-1)!
          .messages.slice(1)
          .map((m) => m.content),
        ["third"],
        "after /reset (and a failed turn) no history",
      );
      assert.deepEqual(lines, ["never"], "nothing read after /exit");
    } finally {
      await stop();
    }
  });

  test("expectations: contains / not_contains case-insensitive, matches regex, max_chars in characters", () => {
    const c = { contains: ["Доставка"], not_contains: ["не знаю"], matches: ["/\\d+ ₽/", "^Д"], max_chars: 20 };
    assert.deepEqual(checkExpectations(c, "доставка 300 ₽"), ["matches ^Д"]);
    assert.deepEqual(checkExpectations(c, "Не знаю, доставка стоит дорого, очень"), [
      'not_contains "не знаю"',
      "matches /\\d+ ₽/",
      "matches ^Д",
      "max_chars 20 (got 37)",
    ]);
    assert.deepEqual(checkExpectations(c, "Доставка 300 ₽"), []);
  });

  test("cases files: list or {cases}, history form, problems reported with file:line", async () => {
    const { bot, fx, stop } = await promptFixture();
    try {
      const good = fx.write(
        "cases.yaml",
        [
          "cases:",
          "  - name: price",
          "    message: Сколько стоит доставка?",
          "    contains: доставка",
          "  - history:",
          "      - user: Привет",
          "      - assistant: Здравствуйте!",
          "      - user: Суббота?",
          "    matches: /суббота/i",
          "    max_chars: 5",
        ].join("\n"),
      );
      const cases = loadCases(good);
      assert.deepEqual(cases[1], {
        name: "case 2",
        history: [
          { role: "user", text: "Привет" },
          { role: "assistant", text: "Здравствуйте!" },
        ],
        message: "Суббота?",
        contains: [],
        not_contains: [],
        matches: ["/суббота/i"],
        max_chars: 5,
        images: [],
      });
      const results = await runCases({ bot, llm: llmFor(bot, logger) }, cases);
      assert.deepEqual(
        results.map((r) => [r.name, r.passed, r.failures]),
        [
          ["price", true, []],
          ["case 2", false, ["max_chars 5 (got 14)"]],
        ],
      );
      const bad = fx.write("bad.yaml", ["- message: hi", "  contains: x", "- message: hi", "  matches: '(['", "- contains: y"].join("\n"));
      assert.throws(
        () => loadCases(bad),
        (e: Error) => {
          assert.match(e.message, /bad\.yaml:4: cases\[1\]\.matches\.0: not a valid regular expression/);
          assert.match(e.message, /bad\.yaml:5: cases\[2\]\.message: give message, or a history ending with a user turn/);
          return e instanceof ConfigError;
        },
      );
    } finally {
      await stop();
    }
  });
});
