import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import type { ChannelSender } from "../../src/core/types.js";
import { startBotApiProxy } from "../support/botapi-proxy.js";
import { ManualClock } from "../support/clock.js";
import { coachHarness, coachScheduler, onboardBerlin, proactiveRows, say } from "../support/coaching.js";
import { dialects } from "../support/db.js";
import { eventually, type Harness, TOKEN } from "../support/harness.js";
import { FakeBotFiles, jpegFixture } from "../support/images.js";
import { botMessages, userSays, waitForBotMessages } from "../support/telegram.js";

/** Monday 2026-05-11, 12:00 in Berlin. */
const MONDAY = Date.UTC(2026, 4, 11, 10, 0);
/** 20:01 Berlin on day `d` after MONDAY. */
const evening = (d: number) => Date.UTC(2026, 4, 11 + d, 18, 1);

function setClock(clock: ManualClock, ms: number): void {
  clock.advance(ms - clock.now());
}

/** The books balance: the ledger sums to the balance and nothing is left reserved. */
async function booksBalance(h: Harness): Promise<void> {
  assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
  assert.deepEqual(await h.store.balance.openReservationsOfBot(h.bot.name), []);
}

for (const dialect of dialects()) {
  describe(`coaching written by the model (${dialect})`, () => {
    const open: Harness[] = [];
    const stops: Array<() => Promise<void>> = [];
    after(async () => {
      for (const h of open) await h.stop();
      for (const stop of stops) await stop();
    });

    test("reminders.style: model: the model writes the reminder, charged like a reply; the template (free) when the model fails or the balance cannot pay", async () => {
      const clock = new ManualClock(MONDAY);
      const h = await coachHarness(dialect, clock, { coaching: "{ phrase_goals: false, reminders: { style: model } }" });
      open.push(h);
      await onboardBerlin(h, 701);
      const s = coachScheduler(h, clock, { llm: true });
      const before = await h.balance();

      setClock(clock, evening(0));
      h.llm.script.push({ text: "Аня, серия ждёт: 20 минут чтения сегодня? /done" });
      assert.equal((await s.tick()).reminders, 1);
      let rows = await proactiveRows(h, 701);
      assert.deepEqual(
        rows.map((r) => [r.text, r.status, r.cost, r.model, r.kind]),
        [["Аня, серия ждёт: 20 минут чтения сегодня? /done", "sent", 500, "test-model", "reminder"]],
      );
      assert.equal(botMessages(h.telegram, 701).at(-1)!.text, "Аня, серия ждёт: 20 минут чтения сегодня? /done");
      assert.equal(await h.balance(), before - 500, "charged like a reply (cost_per_reply 5)");
      const req = h.llm.requests.at(-1)!;
      assert.match(String(req.messages[0]!.content), /Coaching facts[\s\S]*"читать 20 минут" \(daily\): streak 0/, "the model got the numbers");
      assert.match(String(req.messages.at(-1)!.content), /напоминание/);

      // The model fails: the template goes out, free, and the reservation is refunded.
      setClock(clock, evening(1));
      h.llm.script.push({ status: 400, body: { error: { message: "bad request" } } });
      assert.equal((await s.tick()).reminders, 1);
      rows = await proactiveRows(h, 701);
      assert.deepEqual(
        [rows[1]!.text, rows[1]!.status, rows[1]!.cost, rows[1]!.model],
        ["Аня, напоминаю о целях на сегодня: читать 20 минут. Отметьте выполнение: /done", "sent", 0, null],
      );
      assert.equal(await h.balance(), before - 500);

      // The balance cannot pay: the template, and the model is not asked.
      const all = await h.balance();
      await h.store.balance.reserve("default", all, 0, null);
      const asked = h.llm.requests.length;
      setClock(clock, evening(2));
      assert.equal((await s.tick()).reminders, 1);
      rows = await proactiveRows(h, 701);
      assert.deepEqual([rows[2]!.status, rows[2]!.cost, rows[2]!.model], ["sent", 0, null]);
      assert.match(rows[2]!.text, /напоминаю о целях/);
      assert.equal(h.llm.requests.length, asked, "no model call the balance cannot pay for");
      assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
    });

    test("weekly.style: model: the model's words above the computed numbers, charged; words with numbers of their own are refused (template, refunded); /week the same way", async () => {
      const clock = new ManualClock(MONDAY);
      const h = await coachHarness(dialect, clock, { withLlm: true });
      open.push(h);
      await onboardBerlin(h, 702);
      await say(h, 702, "/remind off");
      await say(h, 702, "/done");
      const s = coachScheduler(h, clock, { llm: true });
      const before = await h.balance();
      setClock(clock, Date.UTC(2026, 4, 17, 17, 0)); // Sunday 19:00 Berlin
      h.llm.script.push({ text: "Отличное начало недели, Аня! Продолжайте в том же духе." });
      assert.equal((await s.tick()).weekly, 1);
      const [w] = await proactiveRows(h, 702);
      const numbers = "Итоги недели 2026-05-11 — 2026-05-17:\nОтметок: 1, очков: 10\nчитать 20 минут: 1/7\nЛучший день: 2026-05-11";
      assert.equal(w!.text, `Отличное начало недели, Аня! Продолжайте в том же духе.\n\n${numbers}`);
      assert.deepEqual([w!.status, w!.cost, w!.kind], ["sent", 500, "weekly"]);
      assert.match(String(h.llm.requests.at(-1)!.messages.at(-1)!.content), /Отметок: 1, очков: 10/, "the model gets the computed numbers");
      assert.equal(await h.balance(), before - 500);
      assert.equal((await s.tick()).weekly, 0, "a rerun sends nothing");

      // /week: the model recounts ("3 отметки"): refused, the numbers alone go out, refunded.
      h.llm.script.push({ text: "У вас 3 отметки за неделю!" });
      assert.equal(await say(h, 702, "/week"), numbers);
      let rows = (await eventually(
        async () => ((await proactiveRows(h, 702))[1]?.status === "sent" ? proactiveRows(h, 702) : undefined),
        5000,
        "/week recorded",
      ))!;
      assert.deepEqual([rows[1]!.cost, rows[1]!.kind, rows[1]!.status], [0, "week", "sent"]);
      const weekIn = (await h.messages()).filter((m) => m.direction === "in" && m.text === "/week");
      assert.equal(weekIn[0]!.status, "answered");
      assert.equal((await h.messages()).find((m) => m.id === rows[1]!.id)!.reply_to_id, weekIn[0]!.id, "stored as the answer to /week");
      assert.equal(await h.balance(), before - 500);
      h.llm.script.push({ text: "Хорошая неделя!" });
      assert.equal(await say(h, 702, "/week"), `Хорошая неделя!\n\n${numbers}`);
      rows = (await eventually(async () => ((await proactiveRows(h, 702))[2]?.status === "sent" ? proactiveRows(h, 702) : undefined), 5000, "/week recorded"))!;
      assert.equal(rows[2]!.cost, 500);
      assert.equal(await h.balance(), before - 1000);
      await booksBalance(h);
    });

    test("a kill at any await of a model-written reminder: recovery refunds what was not sent, keeps the charge of what may have been, and nothing is sent again", async () => {
      const clock = new ManualClock(MONDAY);
      const h = await coachHarness(dialect, clock, { coaching: "{ phrase_goals: false, reminders: { style: model } }" });
      open.push(h);
      await onboardBerlin(h, 703);
      await onboardBerlin(h, 704);
      const start = await h.balance();

      // Process A "dies" while the model writes 703's reminder (the call hangs); process B while
      // the channel sends 704's (A still holds 703's claim, so B skips it).
      setClock(clock, evening(0));
      h.llm.respond = () => ({ text: "Аня, пора читать!" });
      h.llm.script.push({ hang: true });
      const a = coachScheduler(h, clock, { llm: true, llmTimeoutMs: 120_000 });
      const passA = a.tick();
      await eventually(async () => (await proactiveRows(h, 703))[0]?.status === "pending" && h.llm.requests.length > 0, 10_000, "703 being written");
      let release: () => void = () => undefined;
      const held = new Promise<void>((r) => (release = r));
      const real = h.running!.bots[0]!.worker;
      const hanging: ChannelSender = { send: async (to, reply) => (await held, real.send(to, reply)) };
      const b = coachScheduler(h, clock, { llm: true, channel: hanging });
      const passB = b.tick();
      await eventually(async () => (await proactiveRows(h, 704))[0]?.status === "delivering", 10_000, "704 being sent");
      assert.equal((await proactiveRows(h, 703))[0]!.status, "pending");
      assert.equal(await h.balance(), start - 1000, "both reserved");

      // The restart: recovery runs before anything else.
      await h.running!.stop(1000);
      await h.startBots();
      const rec = h.running!.bots[0]!.recovery!;
      assert.equal(rec.refunded, 1);
      assert.equal(rec.unconfirmed, 1);
      assert.deepEqual(
        (await proactiveRows(h, 703)).map((r) => [r.status, r.cost]),
        [["failed", 0]],
      );
      assert.equal((await proactiveRows(h, 704))[0]!.status, "unconfirmed");
      assert.equal(await h.balance(), start - 500, "703 refunded, 704 may have arrived: its charge stands");
      await booksBalance(h);

      // The dead processes wake up: A's model call is cut by its stop and sends nothing; B's send
      // lands late, is recorded nowhere new and charged once.
      await a.stop!();
      assert.deepEqual(await passA, { reminders: 0, weekly: 0, failed: 1 });
      release();
      await passB;
      assert.equal((await proactiveRows(h, 704))[0]!.status, "unconfirmed");
      // An instance that lost the bot (a stale epoch) reserves, sends and books nothing.
      const r = h.running!.bots[0]!;
      const stale = coachScheduler(h, clock, { llm: true, fence: { bot: h.bot.name, owner: "gone-instance", epoch: r.epoch + 100 } });
      setClock(clock, evening(1));
      assert.deepEqual(await stale.tick(), { reminders: 0, weekly: 0, failed: 2 });
      assert.equal(await h.balance(), start - 500, "nothing reserved by the fenced instance");
      assert.deepEqual(
        (await proactiveRows(h, 703)).map((x) => x.status),
        ["failed", "failed"],
      );
      assert.deepEqual(
        (await h.store.coaching.deliveries(h.bot.name, "703")).map((d) => d.status),
        ["failed", "failed"],
      );
      await booksBalance(h);
      setClock(clock, evening(0));

      // The new process's scheduler finds both claimed: nothing is sent again that day.
      h.llm.respond = () => ({ text: "again" });
      assert.equal((await coachScheduler(h, clock, { llm: true }).tick()).reminders, 0);
      assert.equal(botMessages(h.telegram, 703).filter((m) => /пора читать|again|напоминаю/.test(m.text)).length, 0);
      assert.equal(botMessages(h.telegram, 704).filter((m) => /пора читать|again|напоминаю/.test(m.text)).length, 1);
      assert.equal(await h.balance(), start - 500);
      await booksBalance(h);
    });

    test("onboarding: the model suggests goal wordings (charged), the user takes them; a shared location sets the zone", async () => {
      const clock = new ManualClock(MONDAY);
      const h = await coachHarness(dialect, clock, { coaching: "{ phrase_goals: true }" });
      open.push(h);
      const u = 705;
      await say(h, u, "/start");
      await say(h, u, "Аня");
      const zone = await say(h, u, "", { text: undefined, location: { latitude: 56.8389, longitude: 60.6057 } });
      assert.match(zone, /по геопозиции: Asia\/Yekaterinburg[\s\S]*цели/);
      assert.equal(JSON.parse((await h.store.coaching.user(h.bot.name, String(u)))!.draft!).timezone, "Asia/Yekaterinburg");
      const before = await h.balance();
      h.llm.script.push({ text: "Бегать по 30 минут 3 раза в неделю\nЧитать 20 страниц каждый день" });
      await userSays(h.telegram, TOKEN, u, "бегать\nбольше читать");
      const msgs = await waitForBotMessages(h.telegram, u, 5);
      assert.equal(msgs[3]!.text, "Бегать по 30 минут 3 раза в неделю\nЧитать 20 страниц каждый день");
      assert.match(msgs[4]!.text, /Взять эти формулировки/);
      assert.deepEqual(
        (msgs[4]!.reply_markup as { inline_keyboard: Array<Array<{ callback_data: string }>> }).inline_keyboard[0]!.map((b) => b.callback_data),
        ["да", "мои"],
      );
      assert.match(String(h.llm.requests.at(-1)!.messages[0]!.content), /бегать \(каждый день\); больше читать \(каждый день\)/);
      assert.equal(await h.balance(), before - 500, "charged like a reply");
      assert.match(await say(h, u, "что?"), /Взять эти формулировки/, "anything else asks again");
      assert.match(await say(h, u, "да"), /Во сколько/);
      const draft = JSON.parse((await h.store.coaching.user(h.bot.name, String(u)))!.draft!);
      assert.deepEqual(
        draft.goals.map((g: { title: string; kind: string; target: number }) => [g.title, g.kind, g.target]),
        [
          ["Бегать по 30 минут 3 раза в неделю", "weekly", 3],
          ["Читать 20 страниц каждый день", "daily", 7],
        ],
      );

      // Another user keeps their own; a model answer that is not one goal per line moves on with theirs.
      const v = 706;
      for (const text of ["/start", "Ваня", "Москва"]) await say(h, v, text);
      h.llm.script.push({ text: "Отличные цели! Я бы предложил начать с малого." });
      await userSays(h.telegram, TOKEN, v, "плавать 2 раза в неделю");
      const m2 = await waitForBotMessages(h.telegram, v, 5);
      assert.match(m2[4]!.text, /Во сколько/);
      assert.deepEqual(JSON.parse((await h.store.coaching.user(h.bot.name, String(v)))!.draft!).goals, [
        { title: "плавать 2 раза в неделю", kind: "weekly", target: 2 },
      ]);

      // The model fails: the user's own goals stand, refunded, onboarding goes on.
      const w = 708;
      for (const text of ["/start", "Оля", "Москва"]) await say(h, w, text);
      const beforeFail = await h.balance();
      h.llm.script.push({ status: 400, body: { error: { message: "bad request" } } });
      assert.match(await say(h, w, "гулять каждый день"), /Во сколько/);
      assert.equal((await h.store.coaching.user(h.bot.name, String(w)))!.step, "remind");
      assert.equal(await h.balance(), beforeFail);
    });

    test("mood-board photos reach the model with the profile request when llm.vision is on", async () => {
      const clock = new ManualClock(MONDAY);
      const files = new FakeBotFiles(TOKEN);
      const kettle = jpegFixture("kettle");
      const receipt = jpegFixture("receipt");
      files.add("mood-1", kettle);
      files.add("mood-2", receipt);
      const h = await coachHarness(dialect, clock, {
        llmYaml: "  vision: { enabled: true, detail: low, max_images: 4, max_bytes: 5MB }",
        apiRoot: async (root) => {
          const proxy = await startBotApiProxy(root, () => undefined, files);
          stops.push(() => proxy.stop());
          return proxy.url;
        },
      });
      open.push(h);
      const u = 707;
      for (const text of ["/start", "Аня", "Berlin", "читать 20 минут", "20:00"]) await say(h, u, text);
      const photo = (id: string, bytes: Buffer) => ({
        text: undefined,
        photo: [{ file_id: id, file_unique_id: `${id}u`, width: 800, height: 600, file_size: bytes.length }],
      });
      assert.match(await say(h, u, "", photo("mood-1", kettle)), /Фото сохранено \(1\)/);
      assert.match(await say(h, u, "", photo("mood-2", receipt)), /Фото сохранено \(2\)/);
      h.llm.script.push({ text: "Аня любит чай и порядок." });
      await userSays(h.telegram, TOKEN, u, "готово");
      const msgs = await waitForBotMessages(h.telegram, u, 9);
      assert.equal(msgs[7]!.text, "Аня любит чай и порядок.");
      const req = h.llm.requests.at(-1)!;
      const content = req.messages.at(-1)!.content as Array<{ type: string; image_url?: { url: string; detail: string } }>;
      const images = content.filter((p) => p.type === "image_url").map((p) => Buffer.from(p.image_url!.url.replace(/^data:image\/jpeg;base64,/, ""), "base64"));
      assert.deepEqual(images, [kettle, receipt], "both mood-board pictures, as sent");
      assert.ok(content.every((p) => p.type !== "image_url" || p.image_url!.detail === "low"));
      assert.match(await say(h, u, "да"), /начинаем/);
    });
  });
}
