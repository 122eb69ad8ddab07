import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { dialects } from "../support/db.js";
import { bin, cli, ensureBuilt, finished, spawnBots } from "../support/cli.js";
import { eventually } from "../support/harness.js";
import { lastUserText } from "../support/openai-server.js";
import { ENV, globals, seededHarness, snapshot } from "../support/replay-fixture.js";
import { botMessages } from "../support/telegram.js";

for (const dialect of dialects()) {
  describe(`bots replay (${dialect})`, () => {
    test("a dry run prints stored and new answers and changes nothing: database, balance, channel", async () => {
      const { h, ids } = await seededHarness(dialect);
      try {
        const before = await snapshot(h);
        const sent = h.telegram.storage.botMessages.length;
        const balance = await h.balance();
        h.llm.respond = (req) => ({ text: `new: ${lastUserText(req)}` });
        const requests = h.llm.requests.length;
        const r = await cli([...globals(h), "replay", "--since", "1h"], ENV);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, new RegExp(`#${ids[0]} shop-tg tg:101 .*\\[answered\\] → changed`));
        assert.match(r.stdout, /stored: echo: a1\n\s+new: {4}new: a1/);
        assert.match(r.stdout, new RegExp(`#${ids[1]} shop-tg tg:101 .*\\[failed\\]`));
        assert.match(r.stdout, /stored: \(none\)\n\s+new: {4}new: a2/);
        assert.match(r.stdout, /tokens \d+ prompt \+ \d+ completion, \d+ ms/);
        assert.match(r.stdout, /Dry run: 4 replayed, 4 changed, 0 errors\. Nothing was written, sent or charged\./);
        assert.equal(h.llm.requests.length - requests, 4);
        assert.equal(await snapshot(h), before, "database unchanged");
        assert.equal(await h.balance(), balance);
        assert.equal(h.telegram.storage.botMessages.length, sent, "nothing delivered");
      } finally {
        await h.stop();
      }
    });

    test("--json prints one object per message and a summary; --status and --id select", async () => {
      const { h, ids } = await seededHarness(dialect);
      try {
        const r = await cli([...globals(h), "--json", "replay", "--status", "failed,received"], ENV);
        assert.equal(r.code, 0, r.stderr);
        const lines = r.stdout
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as Record<string, unknown>);
        assert.deepEqual(
          lines.slice(0, -1).map((l) => [l.id, l.status, l.text, l.new_answer, l.outcome]),
          [
            [ids[1], "failed", "a2", "echo: a2", "dry_run"],
            [ids[2], "failed", "a3", "echo: a3", "dry_run"],
            [ids[3], "received", "a4", "echo: a4", "dry_run"],
          ],
        );
        assert.ok(Number(lines[0]!.prompt_tokens) > 0);
        assert.deepEqual(lines.at(-1), {
          summary: { mode: "dry_run", selected: 3, processed: 3, changed: 3, answered: 0, failed: 0, skipped: 0, interrupted: false },
        });
        const one = await cli([...globals(h), "--json", "replay", "--id", String(ids[0])], ENV);
        const first = JSON.parse(one.stdout.split("\n")[0]!) as Record<string, unknown>;
        assert.equal(first.stored_answer, "echo: a1");
        assert.equal(first.changed, false, "same model, same history: same answer");
        const bad = await cli([...globals(h), "replay", "--status", "nope"], ENV);
        assert.equal(bad.code, 2);
        assert.match(bad.stderr, /unknown status 'nope'/);
      } finally {
        await h.stop();
      }
    });

    test("--send answers only unanswered messages, in order, records and charges; a second --send does nothing", async () => {
      const { h, ids } = await seededHarness(dialect);
      try {
        const balance = await h.balance();
        const r = await cli([...globals(h), "replay", "--send", "--since", "1h"], ENV);
        assert.equal(r.code, 0, r.stderr + r.stdout);
        assert.match(r.stdout, /Sent: 3 answered, 0 not answered, 0 skipped of 3\./);
        assert.deepEqual(
          botMessages(h.telegram, 101).map((m) => m.text),
          ["echo: a1", "echo: a2", "echo: a3"],
        );
        assert.deepEqual(
          botMessages(h.telegram, 102).map((m) => m.text),
          ["echo: a4"],
        );
        const rows = await h.messages();
        for (const id of ids) assert.equal(rows.find((m) => Number(m.id) === id)!.status, "answered");
        const answers = rows.filter((m) => m.direction === "out");
        assert.deepEqual(
          answers.map((m) => [Number(m.reply_to_id), m.text, Number(m.cost)]),
          [
            [ids[0], "echo: a1", 500],
            [ids[1], "echo: a2", 500],
            [ids[2], "echo: a3", 500],
            [ids[3], "echo: a4", 500],
          ],
        );
        assert.equal(await h.balance(), balance - 1500);
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
        // a3's history is every earlier turn of its thread, answers included: a2 and its answer,
        // sent just before, although that answer was stored after a3 arrived.
        const a3 = h.llm.requests.filter((q) => lastUserText(q) === "a3").at(-1)!;
        assert.deepEqual(
          a3.messages.slice(1).map((m) => m.content),
          ["a1", "echo: a1", "a2", "echo: a2", "a3"],
        );

        const requests = h.llm.requests.length;
        const again = await cli([...globals(h), "replay", "--send", "--since", "1h"], ENV);
        assert.equal(again.code, 0);
        assert.match(again.stdout, /Nothing to send/);
        assert.equal(h.llm.requests.length, requests);
        assert.equal(h.telegram.storage.botMessages.length, 4);
        assert.equal(await h.balance(), balance - 1500);
      } finally {
        await h.stop();
      }
    });

    test("an answered message is re-sent only with --force", async () => {
      const { h, ids } = await seededHarness(dialect);
      try {
        const balance = await h.balance();
        const skipped = await cli([...globals(h), "replay", "--send", "--id", String(ids[0]), "--status", "answered"], ENV);
        assert.equal(skipped.code, 0);
        assert.match(skipped.stdout, /answered before; use --force/);
        assert.equal(botMessages(h.telegram, 101).length, 1);
        const forced = await cli([...globals(h), "replay", "--send", "--force", "--id", String(ids[0])], ENV);
        assert.equal(forced.code, 0, forced.stderr + forced.stdout);
        assert.deepEqual(
          botMessages(h.telegram, 101).map((m) => m.text),
          ["echo: a1", "echo: a1"],
        );
        assert.equal(await h.balance(), balance - 500);
        assert.equal((await h.messages()).filter((m) => Number(m.reply_to_id) === ids[0]).length, 2);
        const misuse = await cli([...globals(h), "replay", "--force"], ENV);
        assert.equal(misuse.code, 2);
      } finally {
        await h.stop();
      }
    });

    test("a model failure during --send refunds, keeps the message failed and exits 1", async () => {
      const { h, ids } = await seededHarness(dialect);
      try {
        const balance = await h.balance();
        h.llm.respond = () => ({ status: 400, body: { error: { message: "bad request", type: "invalid_request_error" } } });
        const r = await cli([...globals(h), "replay", "--send", "--id", String(ids[3])], ENV);
        assert.equal(r.code, 1);
        assert.match(r.stdout, /LLM_REJECTED/);
        assert.equal((await h.messages()).find((m) => Number(m.id) === ids[3])!.status, "failed");
        assert.equal(await h.balance(), balance);
        assert.equal(await h.store.balance.ledgerSum("default"), balance);
      } finally {
        await h.stop();
      }
    });
  });
}

describe("bots replay through bin/bots.js", () => {
  test("--send from the built launcher answers the unanswered messages", async () => {
    const { h } = await seededHarness("sqlite");
    try {
      const r = await bin([...globals(h), "replay", "--send", "--since", "1h"], ENV);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Sent: 3 answered/);
      assert.equal(botMessages(h.telegram, 101).length, 3);
      const help = await bin(["replay", "--help"]);
      assert.match(help.stdout, /Examples:\n {2}bots replay --since 24h/);
    } finally {
      await h.stop();
    }
  });

  test("Ctrl-C stops after the current message; a second Ctrl-C quits at once with exit 130", async () => {
    const { h } = await seededHarness("sqlite");
    try {
      h.llm.latencyMs = 60_000;
      const requests = h.llm.requests.length;
      await ensureBuilt();
      const child = spawnBots([...globals(h), "replay", "--since", "1h"], { env: ENV });
      try {
        await eventually(() => h.llm.requests.length > requests, 15_000, "replay asks the model");
        child.kill("SIGINT");
        await eventually(() => child.out.stderr.includes("Stopping after the current message"), 5000, "first Ctrl-C noted");
        child.kill("SIGINT");
        const res = await finished(child, 20_000);
        assert.equal(res.code, 130, res.stderr);
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      }
    } finally {
      await h.stop();
    }
  });
});
