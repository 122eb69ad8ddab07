import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Update, UserFromGetMe } from "telegraf/types";
import { translateUpdate } from "../../src/channels/telegram/translate.js";
import { translateEvent } from "../../src/channels/vk/translate.js";
import type { BotConfig } from "../../src/config/schema.js";
import { loadBotConfigs } from "../../src/config/load.js";
import { Fixture } from "../support/fixture.js";
import { messageNew, wallPostNew, wallReplyNew } from "../support/vk-server.js";

/** Parses a bot YAML through the real loader. */
function botFrom(lines: string[]): BotConfig {
  const fx = new Fixture();
  try {
    fx.write("prompts/p.md", "x");
    fx.bot("b", ["name: b", "prompt: prompts/p.md", "llm: { model: m, api_key: k }", ...lines].join("\n"));
    const { bots, problems } = loadBotConfigs(fx.configDir, {});
    assert.deepEqual(problems, []);
    return bots[0]!;
  } finally {
    fx.cleanup();
  }
}

describe("VK translateEvent", () => {
  const bot = botFrom(["channel: vk", "vk: { token: t, group_id: 42, mode: longpoll }"]);

  test("message_new → vk:dm thread, dedupe by peer and conversation_message_id", () => {
    const a = translateEvent(messageNew({ groupId: 42, peerId: 9, id: 12, text: "  привет  " }), bot, 1000);
    assert.equal(a.kind, "message");
    if (a.kind !== "message") return;
    assert.equal(a.message.threadKey, "vk:dm:9");
    assert.equal(a.message.dedupeKey, "dm:9:12");
    assert.equal(a.message.text, "привет");
    assert.deepEqual(a.message.target, { peer_id: 9 });
    assert.equal(a.message.receivedMs, 1000);
  });

  test("group chats, communities, empty texts and malformed objects are ignored", () => {
    assert.equal(translateEvent(messageNew({ groupId: 42, peerId: 2_000_000_001, fromId: 9, id: 1, text: "hi" }), bot, 0).kind, "ignore");
    assert.equal(translateEvent(messageNew({ groupId: 42, peerId: 9, fromId: -7, id: 1, text: "hi" }), bot, 0).kind, "ignore");
    assert.equal(translateEvent(messageNew({ groupId: 42, peerId: 9, id: 1, text: "   " }), bot, 0).kind, "ignore");
    assert.equal(translateEvent({ type: "message_new", object: { message: { text: "x" } } }, bot, 0).kind, "ignore");
    assert.equal(translateEvent({ type: "wall_reply_new", object: "nonsense" }, bot, 0).kind, "ignore");
    assert.equal(translateEvent({ type: "wall_post_new" }, bot, 0).kind, "ignore");
  });

  test("wall_reply_new → comment with the post key; wall_post_new → post record", () => {
    const c = translateEvent(wallReplyNew({ groupId: 42, postId: 5, commentId: 77, fromId: 3, text: "вопрос" }), bot, 0);
    assert.equal(c.kind, "comment");
    if (c.kind !== "comment") return;
    assert.equal(c.message.threadKey, "vk:post:-42_5:3");
    assert.equal(c.message.dedupeKey, "wall:-42_5:77");
    assert.deepEqual(c.message.target, { owner_id: -42, post_id: 5, comment_id: 77 });
    const p = translateEvent(wallPostNew({ groupId: 42, postId: 5, date: 1_700_000_000, text: "Пост" }), bot, 0);
    assert.deepEqual(p, { kind: "post", post: { owner_id: "-42", post_id: "5", text: "Пост", posted_ms: 1_700_000_000_000 } });
  });
});

describe("Telegram comments under channel posts", () => {
  const bot = botFrom(["channel: tg", "tg: { token: '1:abc', groups: mention }"]);
  const me = {
    id: 1,
    is_bot: true,
    first_name: "Shop",
    username: "shop_bot",
    can_join_groups: true,
    can_read_all_group_messages: false,
    supports_inline_queries: false,
  } as UserFromGetMe;
  const group = { id: -100500, type: "supergroup", title: "Shop chat" };
  const forward = {
    message_id: 10,
    date: 1_700_000_000,
    chat: group,
    from: { id: 777000, is_bot: false, first_name: "Telegram" },
    sender_chat: { id: -100600, type: "channel", title: "Shop" },
    is_automatic_forward: true,
    caption: "Конкурс до 25 ноября",
  };

  test("the automatic forward of a post is ignored", () => {
    const u = { update_id: 1, message: { ...forward, text: "Конкурс до 25 ноября", caption: undefined } } as unknown as Update;
    assert.equal(translateUpdate(u, bot, me, 0).kind, "ignore");
  });

  test("a reply to it is a comment with the post's caption and date, answered without a mention", () => {
    const u = {
      update_id: 2,
      message: {
        message_id: 11,
        date: 1_700_000_100,
        chat: group,
        from: { id: 5, is_bot: false, first_name: "Ann" },
        text: "Участвую",
        reply_to_message: forward,
      },
    } as unknown as Update;
    const a = translateUpdate(u, bot, me, 0);
    assert.equal(a.kind, "message");
    if (a.kind !== "message") return;
    assert.equal(a.message.kind, "comments");
    assert.deepEqual(a.message.vars, { post_text: "Конкурс до 25 ноября", post_date: "2023-11-14T22:13:20.000Z" });
    assert.equal(a.message.threadKey, "tg:-100500:post:10:5");
  });

  test("one user's comments under two posts are two threads; a reply inside a post's comments stays in that post's thread", () => {
    const forward2 = { ...forward, message_id: 20, caption: "Второй пост" };
    const under = (id: number, post: typeof forward, extra: Record<string, unknown> = {}) =>
      ({
        update_id: id,
        message: {
          message_id: id,
          date: 1_700_000_100,
          chat: group,
          from: { id: 5, is_bot: false, first_name: "Ann" },
          text: "вопрос @shop_bot",
          message_thread_id: post.message_id,
          reply_to_message: post,
          ...extra,
        },
      }) as unknown as Update;
    const keys = [under(31, forward), under(32, forward2)].map((u) => {
      const a = translateUpdate(u, bot, me, 0);
      return a.kind === "message" ? a.message.threadKey : a.kind;
    });
    assert.deepEqual(keys, ["tg:-100500:post:10:5", "tg:-100500:post:20:5"]);
    // A follow-up that replies to the bot's answer (not to the forward) inside the first post's comments.
    const botAnswer = { message_id: 40, date: 1_700_000_200, chat: group, from: { id: 1, is_bot: true, first_name: "Shop" }, text: "ответ" };
    const followUp = translateUpdate(under(41, forward, { reply_to_message: botAnswer, text: "а ещё?" }), bot, me, 0);
    assert.equal(followUp.kind === "message" ? followUp.message.threadKey : followUp.kind, "tg:-100500:post:10:5");
  });

  test("an ordinary group message without a mention is still ignored", () => {
    const u = {
      update_id: 3,
      message: { message_id: 12, date: 1_700_000_100, chat: group, from: { id: 5, is_bot: false, first_name: "Ann" }, text: "всем привет" },
    } as unknown as Update;
    assert.equal(translateUpdate(u, bot, me, 0).kind, "ignore");
  });
});
