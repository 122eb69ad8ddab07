import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { TelegramWorker } from "../../src/channels/telegram/worker.js";
import { Pipeline } from "../../src/core/pipeline.js";
import { replay } from "../../src/core/replay.js";
import { llmFor } from "../../src/runner.js";
import { dialects } from "../support/db.js";
import { lastUserText } from "../support/openai-server.js";
import { seededHarness, snapshot } from "../support/replay-fixture.js";
import { botMessages } from "../support/telegram.js";
import type { Harness } from "../support/harness.js";

function deps(h: Harness, extra: Partial<Parameters<typeof replay>[0]> = {}): Parameters<typeof replay>[0] {
  const logger = h.logging.forBot(h.bot.name);
  return {
    bots: [h.bot],
    store: h.store,
    llmFor: (bot) => llmFor(bot, logger, { retry: { baseMs: 10, maxMs: 50 } }),
    pipelineFor: async (bot) =>
      new Pipeline({ bot, store: h.store, llm: llmFor(bot, logger), channel: await TelegramWorker.create(bot, logger, { backoffMs: 20 }), logger }),
    ...extra,
  };
}

for (const dialect of dialects()) {
  describe(`replay() (${dialect})`, () => {
    test("a dry run sends each message with the history its thread had before it", async () => {
      const { h, ids } = await seededHarness(dialect);
      try {
        const before = await snapshot(h);
        const from = h.llm.requests.length;
        const s = await replay(deps(h), { bots: ["shop-tg"], sinceMs: Date.now() - 3_600_000 });
        assert.equal(s.processed, 4);
        const reqs = h.llm.requests.slice(from);
        const history = (text: string) =>
          reqs
            .find((r) => lastUserText(r) === text)!
            .messages.slice(1)
            .map((m) => `${m.role}:${m.content}`);
        assert.deepEqual(history("a1"), ["user:a1"]);
        // a2 failed, so it is not part of a3's history; a1 and its answer are.
        assert.deepEqual(history("a2"), ["user:a1", "assistant:echo: a1", "user:a2"]);
        assert.deepEqual(history("a3"), ["user:a1", "assistant:echo: a1", "user:a3"]);
        assert.deepEqual(history("a4"), ["user:a4"], "another thread's messages never leak in");
        assert.match(String(reqs[0]!.messages[0]!.content), /^You are shop-tg\. Now: \d{4}-\d\d-\d\d \d\d:\d\d UTC\.$/);
        assert.deepEqual(
          s.results.map((r) => [r.id, r.outcome, r.stored_answer, r.new_answer, r.changed]),
          [
            [ids[0], "dry_run", "echo: a1", "echo: a1", false],
            [ids[1], "dry_run", null, "echo: a2", true],
            [ids[2], "dry_run", null, "echo: a3", true],
            [ids[3], "dry_run", null, "echo: a4", true],
          ],
        );
        assert.equal(await snapshot(h), before);
      } finally {
        await h.stop();
      }
    });

    test("a dry run shows the tool calls the model makes and never runs them", async () => {
      const { h, ids } = await seededHarness(dialect);
      try {
        let ran = 0;
        const feature = {
          name: "leads",
          tools: [{ name: "save_lead", description: "save a lead", parameters: { type: "object", properties: {} }, run: async () => String(++ran) }],
        };
        h.llm.script.push({ toolCalls: [{ name: "save_lead", arguments: { phone: "+79000000000" } }] });
        const s = await replay(deps(h, { featuresFor: () => [feature] }), { bots: ["shop-tg"], ids: [ids[3]!] });
        assert.equal(ran, 0);
        assert.deepEqual(s.results[0]!.tool_calls, [{ name: "save_lead", arguments: '{"phone":"+79000000000"}', result: null }]);
        assert.equal(s.results[0]!.new_answer, "echo: a4");
      } finally {
        await h.stop();
      }
    });

    test("an aborted signal stops after the message in progress and keeps what was done", async () => {
      const { h, ids } = await seededHarness(dialect);
      try {
        const ac = new AbortController();
        const s = await replay(deps(h, { signal: ac.signal, onResult: () => ac.abort() }), { bots: ["shop-tg"], sinceMs: 0 }, { send: true });
        assert.equal(s.selected, 3);
        assert.equal(s.processed, 1);
        assert.equal(s.interrupted, true);
        const rows = await h.messages();
        const status = (id: number) => rows.find((m) => Number(m.id) === id)!.status;
        assert.deepEqual([status(ids[1]!), status(ids[2]!), status(ids[3]!)], ["answered", "failed", "received"]);
        assert.deepEqual(
          botMessages(h.telegram, 101).map((m) => m.text),
          ["echo: a1", "echo: a2"],
        );
      } finally {
        await h.stop();
      }
    });

    test("two replays racing on the same messages answer each exactly once", async () => {
      const { h } = await seededHarness(dialect);
      try {
        h.llm.latencyMs = 30;
        const balance = await h.balance();
        const [x, y] = await Promise.all([
          replay(deps(h), { bots: ["shop-tg"], sinceMs: 0 }, { send: true }),
          replay(deps(h), { bots: ["shop-tg"], sinceMs: 0 }, { send: true }),
        ]);
        assert.equal(x.answered + y.answered, 3);
        assert.equal(botMessages(h.telegram, 101).length + botMessages(h.telegram, 102).length, 4);
        assert.equal(await h.balance(), balance - 1500, "the loser's reservations are refunded");
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
      } finally {
        await h.stop();
      }
    });

    test("no_balance messages stay unanswered while the account cannot pay, and are answered after a top-up", async () => {
      const { h, ids } = await seededHarness(dialect);
      try {
        // Spend the whole balance, as earlier replies would have.
        assert.ok(await h.store.balance.reserve("default", await h.balance(), 0, null));
        const s1 = await replay(deps(h), { bots: ["shop-tg"], ids: [ids[3]!] }, { send: true });
        assert.equal(s1.results[0]!.outcome, "no_balance");
        assert.equal((await h.messages()).find((m) => Number(m.id) === ids[3])!.status, "no_balance");
        assert.equal(botMessages(h.telegram, 102).length, 0);
        await h.store.balance.topUp("default", 500);
        const s2 = await replay(deps(h), { bots: ["shop-tg"], ids: [ids[3]!] }, { send: true });
        assert.equal(s2.results[0]!.outcome, "answered");
        assert.deepEqual(
          botMessages(h.telegram, 102).map((m) => m.text),
          ["echo: a4"],
        );
        assert.equal(await h.balance(), 0);
      } finally {
        await h.stop();
      }
    });
  });
}
