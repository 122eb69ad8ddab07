import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { openStore, type Store } from "../../src/storage/index.js";
import { translateUpdate } from "../../src/channels/telegram/translate.js";
import { coachingStats } from "../../src/features/coaching/stats.js";
import { startBotApiProxy } from "../support/botapi-proxy.js";
import { cli } from "../support/cli.js";
import { ManualClock } from "../support/clock.js";
import { dialects } from "../support/db.js";
import { coachHarness, coachScheduler, onboardBerlin, proactiveRows, say } from "../support/coaching.js";
import { eventually, type Harness, TOKEN } from "../support/harness.js";
import { botMessages, userSays, waitForBotMessages } from "../support/telegram.js";

const MIN = 60_000;
const HOUR = 60 * MIN;

const start = (dialect: "sqlite" | "mysql", clock: ManualClock, apiRoot?: (root: string) => Promise<string>) => coachHarness(dialect, clock, { apiRoot });
const scheduler = (h: Harness, clock: ManualClock, store?: Store) => coachScheduler(h, clock, { store });
const onboard = onboardBerlin;
/** Proactive messages stored for a user's thread: [created_ms, text]. */
const proactive = async (h: Harness, id: number): Promise<Array<[number, string]>> => (await proactiveRows(h, id)).map((r) => [r.created_ms, r.text]);

for (const dialect of dialects()) {
  describe(`coaching reminders and weekly summaries (${dialect})`, () => {
    const open: Harness[] = [];
    const stops: Array<() => Promise<void>> = [];
    after(async () => {
      for (const h of open) await h.stop();
      for (const stop of stops) await stop();
    });

    for (const [label, from] of [
      ["spring, 2026-03-29", Date.UTC(2026, 2, 27, 12, 0)],
      ["autumn, 2026-10-25", Date.UTC(2026, 9, 23, 12, 0)],
    ] as const) {
      test(`exactly one reminder per local day at 20:00 Berlin across the clock change (${label})`, async () => {
        const clock = new ManualClock(from);
        const h = await start(dialect, clock);
        open.push(h);
        await onboard(h, 601);
        const s = scheduler(h, clock);
        for (let t = from; t < from + 4 * 24 * HOUR; t += 5 * MIN) {
          clock.advance(t - clock.now());
          await s.tick();
        }
        const reminders = (await proactive(h, 601)).filter(([, text]) => /напоминаю/.test(text));
        const local = reminders.map(([ms]) => new Date(ms).toLocaleString("sv-SE", { timeZone: "Europe/Berlin" }).slice(0, 16));
        const d0 = new Date(from).toISOString().slice(0, 8);
        const day = Number(new Date(from).toISOString().slice(8, 10));
        assert.deepEqual(
          local,
          [0, 1, 2, 3].map((i) => `${d0}${String(day + i).padStart(2, "0")} 20:00`),
        );
        const rows = (await h.store.coaching.deliveries(h.bot.name, "601")).filter((d) => d.kind === "reminder");
        assert.deepEqual(
          rows.map((d) => d.status),
          ["sent", "sent", "sent", "sent"],
        );
      });
    }

    test("two schedulers on one database send one reminder; none after a check-in; none after /stop", async () => {
      const clock = new ManualClock(Date.UTC(2026, 4, 11, 10, 0));
      const h = await start(dialect, clock);
      open.push(h);
      await onboard(h, 602);
      await onboard(h, 603);
      await onboard(h, 604);
      await say(h, 603, "/done");
      await say(h, 604, "/stop");
      const other = await openStore(h.db.url, { now: clock.now });
      try {
        clock.advance(Date.UTC(2026, 4, 11, 18, 1) - clock.now()); // 20:01 Berlin
        const [a, b] = await Promise.all([scheduler(h, clock).tick(), scheduler(h, clock, other).tick()]);
        assert.equal(a.reminders + b.reminders, 1);
        await scheduler(h, clock, other).tick();
      } finally {
        await other.close();
      }
      assert.equal((await proactive(h, 602)).length, 1);
      assert.equal((await proactive(h, 603)).length, 0, "checked in today");
      assert.equal((await proactive(h, 604)).length, 0, "stopped");
      assert.match(botMessages(h.telegram, 602).at(-1)!.text, /Аня, напоминаю о целях на сегодня: читать 20 минут/);
    });

    test("catch-up after 3 h of downtime, none after 5 h", async () => {
      const clock = new ManualClock(Date.UTC(2026, 4, 11, 10, 0));
      const h = await start(dialect, clock);
      open.push(h);
      await onboard(h, 605);
      clock.advance(Date.UTC(2026, 4, 11, 21, 0) - clock.now()); // 23:00 Berlin, 3 h late
      assert.equal((await scheduler(h, clock).tick()).reminders, 1);
      clock.advance(Date.UTC(2026, 4, 12, 23, 0) - clock.now()); // 01:00 Berlin on the 13th: 5 h after Tuesday's 20:00 (the day runs to 04:00)
      assert.equal((await scheduler(h, clock).tick()).reminders, 0);
      assert.equal((await proactive(h, 605)).length, 1);
    });

    test("a 403 'bot was blocked by the user' marks the user blocked; no more reminders", async () => {
      const clock = new ManualClock(Date.UTC(2026, 4, 11, 10, 0));
      let blocked = false;
      let proxy: Awaited<ReturnType<typeof startBotApiProxy>> | undefined;
      const h = await start(dialect, clock, async (root) => {
        proxy = await startBotApiProxy(root, (method) =>
          blocked && method === "sendMessage" ? { error_code: 403, description: "Forbidden: bot was blocked by the user" } : undefined,
        );
        return proxy.url;
      });
      open.push(h);
      stops.push(() => proxy!.stop());
      await onboard(h, 606);
      blocked = true;
      clock.advance(Date.UTC(2026, 4, 11, 18, 5) - clock.now());
      assert.equal((await scheduler(h, clock).tick()).failed, 1);
      assert.equal((await h.store.coaching.user(h.bot.name, "606"))!.status, "blocked");
      const [d] = await h.store.coaching.deliveries(h.bot.name, "606");
      assert.equal(d!.status, "failed");
      assert.match(d!.error!, /403/);
      clock.advance(24 * HOUR);
      assert.deepEqual(await scheduler(h, clock).tick(), { reminders: 0, weekly: 0, failed: 0 });
    });

    test("my_chat_member 'kicked' marks the user blocked, 'member' unblocks; nothing is answered", async () => {
      const clock = new ManualClock(Date.UTC(2026, 4, 11, 10, 0));
      const h = await start(dialect, clock);
      open.push(h);
      await onboard(h, 609);
      const sentBefore = botMessages(h.telegram, 609).length;
      const update = (status: string, date: number) =>
        ({
          update_id: date,
          my_chat_member: {
            chat: { id: 609, type: "private", first_name: "U" },
            from: { id: 609, is_bot: false, first_name: "U" },
            date,
            old_chat_member: { status: "member", user: { id: 1, is_bot: true, first_name: "B" } },
            new_chat_member: { status, user: { id: 1, is_bot: true, first_name: "B" }, ...(status === "kicked" ? { until_date: 0 } : {}) },
          },
        }) as never;
      const submit = async (status: string, date: number) => {
        const a = translateUpdate(
          update(status, date),
          h.bot,
          {
            id: 1,
            is_bot: true,
            first_name: "B",
            username: "b",
            can_join_groups: true,
            can_read_all_group_messages: false,
            supports_inline_queries: false,
          } as never,
          clock.now(),
          h.pipeline.accepts,
        );
        assert.equal(a.kind, "message");
        if (a.kind === "message") await h.pipeline.submit(a.message);
        await h.pipeline.onIdle();
      };
      await submit("kicked", 100);
      assert.equal((await h.store.coaching.user(h.bot.name, "609"))!.status, "blocked");
      clock.advance(Date.UTC(2026, 4, 11, 18, 5) - clock.now());
      assert.equal((await scheduler(h, clock).tick()).reminders, 0);
      await submit("member", 200);
      assert.equal((await h.store.coaching.user(h.bot.name, "609"))!.status, "active");
      assert.equal((await scheduler(h, clock).tick()).reminders, 1);
      const rows = await h.store.database.db
        .selectFrom("messages")
        .select(["status", "text"])
        .where("thread_key", "=", "tg:609")
        .where("text", "like", "[my_chat_member%")
        .execute();
      assert.deepEqual(
        rows.map((r) => r.status),
        ["skipped", "skipped"],
      );
      assert.equal(botMessages(h.telegram, 609).length, sentBefore + 1, "only the reminder was sent");
    });

    test("weekly summary on Sunday 19:00 local: its numbers are the database's, 'not recorded' for an empty goal, a rerun sends nothing", async () => {
      const clock = new ManualClock(Date.UTC(2026, 4, 11, 10, 0)); // Monday
      const h = await start(dialect, clock);
      open.push(h);
      await onboard(h, 607);
      await say(h, 607, "/goal add плавать 2 раза в неделю");
      await say(h, 607, "/remind off");
      await say(h, 607, "/done 1");
      await say(h, 607, "/done 1");
      clock.advance(2 * 24 * HOUR); // Wednesday
      await say(h, 607, "/done 1");
      clock.advance(Date.UTC(2026, 4, 17, 17, 0) - clock.now()); // Sunday 19:00 Berlin
      const s = scheduler(h, clock);
      assert.equal((await s.tick()).weekly, 1);
      assert.equal((await s.tick()).weekly, 0);
      clock.advance(30 * MIN);
      assert.equal((await scheduler(h, clock).tick()).weekly, 0);
      const sent = await proactive(h, 607);
      assert.equal(sent.length, 1);
      const checkins = await h.store.coaching.checkins(h.bot.name, "607");
      const week = checkins.filter((c) => c.day >= "2026-05-11" && c.day <= "2026-05-17");
      const text = sent[0]![1];
      assert.match(text, /2026-05-11 — 2026-05-17/);
      assert.match(text, new RegExp(`Отметок: ${week.length}, очков: ${week.reduce((a, c) => a + c.points, 0)}`));
      assert.match(text, /читать 20 минут: 2\/7/);
      assert.match(text, /плавать 2 раза в неделю: не записано/);
      assert.match(text, /Лучший день: 2026-05-11/);
      assert.equal(await say(h, 607, "/week"), text, "/week shows the same numbers");

      // bots coaching stats: the same log, as the operator sees it.
      const st = await coachingStats(h.store, h.bot.name, clock.now());
      assert.equal(st.users.active, 1);
      assert.equal(st.users.active_7d, 1);
      assert.equal(st.checkins_7d, 3);
      assert.deepEqual(st.weekly, { sent: 1, failed: 0, claimed: 0 });
      assert.equal(st.streaks["0"] + st.streaks["1-2"], 2, "reading broke after Wednesday (0 or 1 with a freeze), swimming has none");
      assert.equal(st.cost, 500, "the profile was the one model answer");
      assert.equal(st.cost_per_active_user, 500);
      const r = await cli(["--config-dir", h.fixture.configDir, "--db", h.db.url, "--json", "coaching", "stats", "shop-tg"], {
        OPENAI_API_KEY: "sk-test-key-123456",
        TG_TOKEN: TOKEN,
      });
      assert.equal(r.code, 0, r.stderr);
      const json = JSON.parse(r.stdout);
      assert.deepEqual(json.users, { ...json.users, total: 1, active: 1, blocked: 0 });
      const bad = await cli(["--config-dir", h.fixture.configDir, "--db", h.db.url, "coaching", "stats", "nope"], {
        OPENAI_API_KEY: "sk-test-key-123456",
        TG_TOKEN: TOKEN,
      });
      assert.equal(bad.code, 2);
    });

    test("/export sends the user's data as a JSON document; /delete erases it after confirmation", async () => {
      const clock = new ManualClock(Date.UTC(2026, 4, 11, 10, 0));
      const uploads: string[] = [];
      let proxy: Awaited<ReturnType<typeof startBotApiProxy>> | undefined;
      const h = await start(dialect, clock, async (root) => {
        // telegram-test-api has no sendDocument: the proxy answers it as the Bot API does and keeps the upload.
        proxy = await startBotApiProxy(root, (method, _body, raw) => {
          if (method !== "sendDocument") return undefined;
          uploads.push(raw.toString("utf8"));
          return {
            result: { message_id: 9000 + uploads.length, date: 0, chat: { id: 608, type: "private" }, document: { file_id: "doc", file_unique_id: "d" } },
          };
        });
        return proxy.url;
      });
      open.push(h);
      stops.push(() => proxy!.stop());
      await onboard(h, 608);
      await say(h, 608, "/done");
      // In a group, /export@bot and /delete@bot get a hint to use the private chat: no document
      // with the user's data goes to the group, nothing is set up for erasing.
      const group = h.telegram.getClient(TOKEN, { userId: 608, chatId: -100608, firstName: "U", userName: "u", type: "group" });
      await group.sendCommand(group.makeCommand("/export@TestNameBot"));
      await group.sendCommand(group.makeCommand("/delete@TestNameBot"));
      const hints = await waitForBotMessages(h.telegram, -100608, 2);
      for (const hint of hints) assert.match(hint.text, /только в личном чате/);
      assert.equal(uploads.length, 0);
      assert.equal((await h.store.coaching.user(h.bot.name, "608"))!.step, null);
      await userSays(h.telegram, TOKEN, 608, "/export");
      await eventually(() => uploads.length === 1, 10_000, "sendDocument");
      const upload = uploads[0]!;
      assert.match(upload, /filename="coaching-shop-tg-608\.json"/);
      assert.match(upload, /name="caption"\r\n\r\nВаши данные\r\n/);
      const data = JSON.parse(upload.slice(upload.indexOf("{\n"), upload.lastIndexOf("\n}") + 2));
      const stored = await eventually(
        async () => (await h.messages()).find((m) => m.direction === "out" && m.channel_message_id === "9001"),
        5000,
        "the document stored as an answer",
      );
      assert.equal(stored!.text, "Ваши данные");
      assert.equal(data.user.timezone, "Europe/Berlin");
      assert.deepEqual(
        data.checkins.map((c: { day: string; points: number }) => [c.day, c.points]),
        [["2026-05-11", 10]],
      );
      assert.equal(data.goals[0].title, "читать 20 минут");
      assert.match(await say(h, 608, "/delete"), /удалить/);
      assert.match(await say(h, 608, "нет"), /отменено/);
      assert.ok(await h.store.coaching.user(h.bot.name, "608"));
      await say(h, 608, "/delete");
      assert.match(await say(h, 608, "удалить"), /удалены/);
      assert.equal(await h.store.coaching.user(h.bot.name, "608"), undefined);
      assert.deepEqual(await h.store.coaching.checkins(h.bot.name, "608"), []);
      assert.deepEqual(await h.store.coaching.goals(h.bot.name, "608", true), []);
      // The confirmation is erased right after it is sent: the bot message can arrive first.
      await eventually(
        async () => (await h.store.database.db.selectFrom("messages").select("id").where("thread_key", "=", "tg:608").execute()).length === 0,
        5000,
        "the dialog erased too",
      );
      assert.match(await say(h, 608, "/start"), /Как к вам обращаться/, "a new start begins onboarding again");
    });
  });
}
