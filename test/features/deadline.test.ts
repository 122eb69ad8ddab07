import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { TelegramWorker } from "../../src/channels/telegram/worker.js";
import { loadBotConfigs } from "../../src/config/load.js";
import { findDeadline } from "../../src/features/deadline.js";
import { zonedTimeToUtc } from "../../src/lib/zoned.js";
import { startBots } from "../../src/runner.js";
import { dialects } from "../support/db.js";
import { Fixture } from "../support/fixture.js";
import { eventually, Harness, TOKEN } from "../support/harness.js";
import { waitForBotMessages } from "../support/telegram.js";
import { VK_SECRET, VkHarness } from "../support/vk-harness.js";
import { postCallback, wallPostNew, wallReplyNew } from "../support/vk-server.js";

const MSK = "Europe/Moscow";
/** When the posts were published: 1 Nov 2026, 12:00 Moscow. */
const POSTED = Date.parse("2026-11-01T09:00:00Z");
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

describe("findDeadline", () => {
  const find = (text: string, timezone = MSK, referenceMs = POSTED) => iso(findDeadline(text, { referenceMs, timezone }));

  test("Russian: a date after 'до' means the end of that day in the bot's time zone", () => {
    assert.equal(find("Розыгрыш! Приём заявок до 25 ноября. Итоги подведём 1 декабря."), "2026-11-25T20:59:59.999Z");
    assert.equal(find("Приём заявок до 25 ноября", "UTC"), "2026-11-25T23:59:59.999Z");
    assert.equal(find("Принимаем работы по 3 декабря включительно"), "2026-12-03T20:59:59.999Z");
  });

  test("Russian: DD.MM with and without a time; a year-less date is the next one after the post", () => {
    assert.equal(find("Заявки до 30.11 23:59"), "2026-11-30T20:59:00.000Z");
    assert.equal(find("Заявки до 30.11"), "2026-11-30T20:59:59.999Z");
    assert.equal(find("Итоги 12.12, заявки до 5.01"), "2027-01-05T20:59:59.999Z");
    assert.equal(find("до 25.11.2026 12:00"), "2026-11-25T09:00:00.000Z");
    assert.equal(find("Конкурс продлится до 5 декабря 18:00"), "2026-12-05T15:00:00.000Z");
  });

  test("English: until / by / deadline", () => {
    assert.equal(find("Apply until December 1", "UTC"), "2026-12-01T23:59:59.999Z");
    assert.equal(find("Send your photos by Nov 30, 18:00", "America/New_York"), "2026-11-30T23:00:00.000Z");
    assert.equal(find("Deadline: November 20"), "2026-11-20T20:59:59.999Z");
  });

  test("dates without a deadline word are not deadlines; several deadlines → the latest", () => {
    assert.equal(find("Встречаемся 5 декабря в 18:00 в нашем магазине"), null);
    assert.equal(find("Просто красивое фото"), null);
    assert.equal(find("Регистрация до 20 ноября, оплата до 25 ноября"), "2026-11-25T20:59:59.999Z");
  });

  test("zonedTimeToUtc honours DST", () => {
    assert.equal(iso(zonedTimeToUtc(2026, 7, 1, 12, 0, 0, 0, "Europe/Berlin")), "2026-07-01T10:00:00.000Z");
    assert.equal(iso(zonedTimeToUtc(2026, 1, 1, 12, 0, 0, 0, "Europe/Berlin")), "2026-01-01T11:00:00.000Z");
  });
});

describe("features.deadline config", () => {
  test("is strict and defaults expired_reply to null", () => {
    const fx = new Fixture();
    try {
      fx.write("prompts/p.md", "x");
      const base = ["channel: vk", "prompt: prompts/p.md", "llm: { model: m, api_key: k }", "vk: { token: t, group_id: 1, mode: longpoll }"];
      fx.bot("a", ["name: a", ...base, "features: { deadline: {} }"].join("\n"));
      fx.bot("b", ["name: b", ...base, "features: { deadline: { expired_reply: 'Приём закрыт', grace_minutes: 5, typo: 1 } }"].join("\n"));
      const { bots, problems } = loadBotConfigs(fx.configDir, {});
      assert.deepEqual(bots.find((b) => b.name === "a")?.features.deadline, { expired_reply: null, grace_minutes: 0 });
      assert.equal(problems.length, 1);
      assert.match(problems[0]!.field ?? "", /features\.deadline/);
    } finally {
      fx.cleanup();
    }
  });
});

for (const dialect of dialects()) {
  describe(`deadline on VK comments (${dialect})`, () => {
    const POST = "Розыгрыш! Приём заявок до 25 ноября. Итоги 1 декабря.";

    async function withBot(nowIso: string, features: string, run: (h: VkHarness) => Promise<void>) {
      const now = Date.parse(nowIso);
      const h = await VkHarness.start({ dialect, now: () => now, extraYaml: `timezone: ${MSK}\nfeatures:\n  deadline: ${features}` });
      try {
        await postCallback(h.callbackUrl, wallPostNew({ groupId: h.groupId, postId: 55, date: POSTED / 1000, text: POST, secret: VK_SECRET }));
        await run(h);
      } finally {
        await h.stop();
      }
    }

    test("a comment after the post's deadline gets the expired reply, status skipped, no charge", async () => {
      await withBot("2026-11-26T07:00:00Z", "{ expired_reply: 'Приём заявок завершён.' }", async (h) => {
        await postCallback(
          h.callbackUrl,
          wallReplyNew({ groupId: h.groupId, postId: 55, commentId: 7001, fromId: 401, text: "Можно ещё участвовать?", secret: VK_SECRET }),
        );
        await eventually(() => h.vk.comments.length === 1, 5000, "expired reply");
        await h.pipeline.onIdle();
        const c = h.vk.comments[0]!.params;
        assert.equal(c.message, "Приём заявок завершён.");
        assert.equal(c.reply_to_comment, "7001");
        assert.equal(h.llm.requests.length, 0, "the model is not asked");
        const [incoming, outgoing] = await h.messages();
        assert.equal(incoming!.status, "skipped");
        assert.match(incoming!.error!, /deadline 2026-11-25T20:59:59\.999Z/);
        assert.equal(outgoing!.text, "Приём заявок завершён.");
        assert.equal(outgoing!.reply_to_id, incoming!.id);
        assert.equal(outgoing!.cost, 0);
        assert.equal(await h.balance(), 50000);
      });
    });

    test("without expired_reply a late comment gets no answer (skipped); an earlier deadline-free post is answered", async () => {
      await withBot("2026-11-26T07:00:00Z", "{}", async (h) => {
        await postCallback(h.callbackUrl, wallReplyNew({ groupId: h.groupId, postId: 55, commentId: 7002, fromId: 402, text: "Я успел?", secret: VK_SECRET }));
        await postCallback(
          h.callbackUrl,
          wallPostNew({ groupId: h.groupId, postId: 56, date: POSTED / 1000, text: "Новое поступление курток", secret: VK_SECRET }),
        );
        await postCallback(h.callbackUrl, wallReplyNew({ groupId: h.groupId, postId: 56, commentId: 7003, fromId: 402, text: "Цена?", secret: VK_SECRET }));
        await eventually(() => h.vk.comments.length === 1, 5000, "answer on the post without deadline");
        await h.pipeline.onIdle();
        assert.equal(h.vk.comments[0]!.params.reply_to_comment, "7003");
        const rows = (await h.messages()).filter((r) => r.direction === "in");
        assert.deepEqual(
          rows.map((r) => [r.channel_message_id, r.status]),
          [
            ["7002", "skipped"],
            ["7003", "answered"],
          ],
        );
        assert.equal(await h.balance(), 50000 - 500);
      });
    });

    test("a comment before the deadline is answered by the model", async () => {
      await withBot("2026-11-25T20:00:00Z", "{ expired_reply: 'Приём заявок завершён.' }", async (h) => {
        await postCallback(h.callbackUrl, wallReplyNew({ groupId: h.groupId, postId: 55, commentId: 7004, fromId: 403, text: "Участвую!", secret: VK_SECRET }));
        await eventually(() => h.vk.comments.length === 1, 5000, "answer");
        assert.equal(h.vk.comments[0]!.params.message, "echo: Участвую!");
      });
    });
  });

  describe(`deadline on Telegram discussion-group comments (${dialect})`, () => {
    const GROUP = -1001234567890;
    const CHANNEL = -1009876543210;

    async function withBot(nowIso: string, run: (h: Harness) => Promise<void>) {
      const now = Date.parse(nowIso);
      const h = await Harness.start({
        dialect,
        start: false,
        extraYaml: `  groups: mention\ntimezone: ${MSK}\nfeatures:\n  deadline: { expired_reply: 'Приём заявок закрыт.' }`,
      });
      try {
        h.running = await startBots({
          bots: [h.bot],
          store: h.store,
          logging: h.logging,
          now: () => now,
          createWorker: (bot, logger) => TelegramWorker.create(bot, logger, { idlePauseMs: 20, backoffMs: 50, now: () => now }),
          llm: { retry: { baseMs: 20, maxMs: 200 } },
        });
        await run(h);
      } finally {
        await h.stop();
      }
    }

    /** A user's comment under a channel post: a reply to the post's automatic forward in the group. */
    async function comment(h: Harness, userId: number, text: string, postText: string) {
      const client = h.telegram.getClient(TOKEN, {
        userId,
        chatId: GROUP,
        type: "supergroup",
        chatTitle: "Shop chat",
        firstName: `User${userId}`,
        userName: `user${userId}`,
      });
      const reply_to_message = {
        message_id: 10,
        date: POSTED / 1000,
        chat: { id: GROUP, type: "supergroup", title: "Shop chat" },
        from: { id: 777000, is_bot: false, first_name: "Telegram" },
        sender_chat: { id: CHANNEL, type: "channel", title: "Shop" },
        forward_origin: { type: "channel", chat: { id: CHANNEL, type: "channel", title: "Shop" }, message_id: 5, date: POSTED / 1000 },
        is_automatic_forward: true,
        text: postText,
      };
      await client.sendMessage({ ...client.makeMessage(text), reply_to_message } as never);
    }

    test("a comment after the channel post's deadline gets the expired reply, skipped and free", async () => {
      await withBot("2026-11-26T07:00:00Z", async (h) => {
        await comment(h, 901, "Ещё можно?", "Приём заявок до 25 ноября!");
        const [reply] = await waitForBotMessages(h.telegram, GROUP, 1);
        assert.equal(reply!.text, "Приём заявок закрыт.");
        await h.pipeline.onIdle();
        const [incoming] = await h.messages();
        assert.equal(incoming!.status, "skipped");
        assert.equal(Number(reply!.reply_parameters?.message_id), Number(incoming!.channel_message_id));
        assert.equal(h.llm.requests.length, 0);
        assert.equal(await h.balance(), 50000);
      });
    });

    test("a comment before the deadline is answered with the post in the prompt", async () => {
      await withBot("2026-11-20T07:00:00Z", async (h) => {
        await comment(h, 902, "Как участвовать?", "Приём заявок до 25 ноября!");
        const [reply] = await waitForBotMessages(h.telegram, GROUP, 1);
        assert.equal(reply!.text, "echo: Как участвовать?");
        assert.match(String(h.llm.requests[0]!.messages[0]!.content), /Post being commented on:\nПриём заявок до 25 ноября!$/);
        await eventually(async () => (await h.messages())[0]?.status === "answered", 5000, "answered");
      });
    });
  });
}
