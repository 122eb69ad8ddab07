import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { startDraftProxy } from "../support/botapi-proxy.js";
import { finished } from "../support/cli.js";
import { dialects } from "../support/db.js";
import { eventually, TOKEN } from "../support/harness.js";
import { Scenario } from "../support/scenario.js";
import { botMessages, userSays } from "../support/telegram.js";

/** An answer of 40 words: 10 s at 250 ms a chunk, long enough to kill the process in the middle. */
const ANSWER = Array.from({ length: 40 }, (_, i) => `word${i + 1}`).join(" ");

for (const dialect of dialects()) {
  describe(`kill -9 while an answer streams, through bin/bots.js (${dialect})`, () => {
    const open: Scenario[] = [];
    after(async () => {
      for (const s of open) await s.close();
    });

    test("drafts shown, then SIGKILL: no partial message; the restart asks the model again, answers once, charged once", async () => {
      const s = await Scenario.create(dialect);
      open.push(s);
      const proxy = await startDraftProxy(s.telegram.config.apiURL);
      s.closers.push(() => proxy.stop());
      const env = { TG_API_ROOT: proxy.url };
      s.llm.respond = () => ({ text: ANSWER, chunkDelayMs: 250 });
      const a = await s.start([], env);
      await userSays(s.telegram, TOKEN, 901, "tell me everything");
      await eventually(() => proxy.drafts.length >= 2, 20_000, "drafts while the answer streams");
      a.kill("SIGKILL");
      await finished(a, 10_000);

      assert.ok(proxy.drafts.every((d) => d.chat_id === 901 && ANSWER.startsWith(d.text)));
      assert.ok(proxy.drafts.at(-1)!.text.length < ANSWER.length, "killed before the answer was complete");
      assert.equal(proxy.calls.filter((m) => m === "sendMessage").length, 0, "no sendMessage before the kill");
      assert.deepEqual(botMessages(s.telegram, 901), [], "no partial message in the chat");
      const [row] = await s.incoming();
      assert.equal(row!.status, "received", "the answer was still being written by the model");

      s.llm.respond = () => ({ text: ANSWER, chunkDelayMs: 5 });
      const b = await s.start([], env);
      await eventually(async () => (await s.countStatus("answered")) === 1, 30_000, "answered after the restart");
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(
        botMessages(s.telegram, 901).map((m) => m.text),
        [ANSWER],
        "exactly one answer, whole",
      );
      assert.equal(proxy.calls.filter((m) => m === "sendMessage").length, 1);
      assert.equal(s.llm.requests.length, 2, "the restart asked the model again");
      assert.equal((await s.incoming())[0]!.cost, 500);
      b.kill("SIGTERM");
      assert.equal((await finished(b, 30_000)).code, 0);
      await s.assertBooks(1000 * 100);
    });
  });
}
