import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { finished } from "../support/cli.js";
import { dialects } from "../support/db.js";
import { eventually, TOKEN } from "../support/harness.js";
import { Scenario } from "../support/scenario.js";
import { botMessages, userSays, waitForBotMessages } from "../support/telegram.js";

const COACHING = ["timezone: Europe/Moscow", "features:", "  coaching: {}"].join("\n");

for (const dialect of dialects()) {
  describe(`coaching onboarding across kill -9, through bin/bots.js (${dialect})`, () => {
    const open: Scenario[] = [];
    after(async () => {
      for (const s of open) await s.close();
    });

    test("kill -9 while the model phrases the goals, then start again: the same step continues; nothing answered twice or charged twice", async () => {
      const s = await Scenario.create(dialect, { extraYaml: COACHING });
      open.push(s);
      const u = 801;
      const say = async (text: string, n: number) => {
        await userSays(s.telegram, TOKEN, u, text);
        return (await waitForBotMessages(s.telegram, u, n, 20_000))[n - 1]!.text;
      };
      const a = await s.start();
      assert.match(await say("/start", 1), /Как к вам обращаться/);
      assert.match(await say("Аня", 2), /городе/);
      assert.match(await say("Berlin", 3), /цели/);
      // The goals go to the model, which never answers: the process dies in the middle.
      s.llm.script.push({ hang: true });
      await userSays(s.telegram, TOKEN, u, "бегать\nбольше читать");
      await eventually(() => s.llm.requests.length === 1, 20_000, "the model asked to phrase the goals");
      a.kill("SIGKILL");
      await finished(a, 10_000);
      const user = (await s.store.coaching.user("shop-tg", String(u)))!;
      assert.equal(user.step, "goals_phrase", "the step is stored before the model is asked");
      assert.equal(JSON.parse(user.draft!).timezone, "Europe/Berlin");
      assert.equal(await s.openReservations(), 1, "the kill left the model's reservation open");
      assert.equal(botMessages(s.telegram, u).length, 3);

      // The next start: recovery refunds the reservation and resumes the message at the same step.
      s.llm.respond = () => ({ text: "Бегать 3 раза в неделю\nЧитать 20 минут каждый день" });
      const b = await s.start();
      const resumed = (await waitForBotMessages(s.telegram, u, 5, 20_000)).map((m) => m.text);
      assert.equal(resumed[3], "Бегать 3 раза в неделю\nЧитать 20 минут каждый день");
      assert.match(resumed[4]!, /Взять эти формулировки/);
      assert.match(await say("да", 6), /Во сколько/);
      assert.match(await say("20:00", 7), /мудборд/);
      s.llm.respond = () => ({ text: "Аня из Берлина." });
      await userSays(s.telegram, TOKEN, u, "/skip");
      assert.match((await waitForBotMessages(s.telegram, u, 9, 20_000))[8]!.text, /Всё верно/);
      assert.match(await say("да", 10), /начинаем/);
      b.kill("SIGTERM");
      assert.equal((await finished(b, 30_000)).code, 0);

      const done = (await s.store.coaching.user("shop-tg", String(u)))!;
      assert.equal(done.status, "active");
      assert.equal(done.timezone, "Europe/Berlin");
      assert.deepEqual(
        (await s.store.coaching.goals("shop-tg", String(u))).map((g) => [g.title, g.kind, g.target]),
        [
          ["Бегать 3 раза в неделю", "weekly", 3],
          ["Читать 20 минут каждый день", "daily", 7],
        ],
      );
      assert.equal(botMessages(s.telegram, u).length, 10, "one answer per step, none twice");
      assert.equal(s.llm.requests.length, 3, "the goals (twice: cut off, then again) and the profile");
      // Two model answers were sent (goals, profile); the cut-off one was refunded.
      const balance = (await s.store.balance.get("default"))!.balance;
      assert.equal(balance, 1000 * 100 - 2 * 500);
      assert.equal(await s.store.balance.ledgerSum("default"), balance);
      assert.equal(await s.openReservations(), 0);
    });
  });
}
