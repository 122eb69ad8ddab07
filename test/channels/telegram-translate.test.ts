import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Update } from "telegraf/types";
import { translateUpdate } from "../../src/channels/telegram/translate.js";
import { splitText } from "../../src/lib/text.js";
import type { BotConfig } from "../../src/config/schema.js";
import { renderPrompt } from "../../src/llm/prompt.js";

const me = {
  id: 666,
  is_bot: true as const,
  first_name: "Shop",
  username: "ShopBot",
  can_join_groups: true,
  can_read_all_group_messages: false,
  supports_inline_queries: false,
};
const bot = (groups: "mention" | "all" | "off" = "mention") =>
  ({ name: "shop-tg", llm: { vision: { max_bytes: 5 * 1024 * 1024 } }, tg: { groups, commands: { start: "s", help: "h" } } }) as unknown as BotConfig;
const msg = (m: Record<string, unknown>) =>
  ({
    update_id: 1,
    message: { message_id: 7, date: 0, from: { id: 5, is_bot: false, first_name: "Ann", last_name: "Lee" }, chat: { id: 5, type: "private" }, ...m },
  }) as unknown as Update;

describe("Telegram update translation", () => {
  test("private text → message with thread key tg:<chat_id> and a dedupe key", () => {
    const a = translateUpdate(msg({ text: " Hi " }), bot(), me, 1000);
    assert.equal(a.kind, "message");
    if (a.kind !== "message") return;
    assert.deepEqual([a.message.text, a.message.threadKey, a.message.dedupeKey, a.message.userName, a.message.chatId], ["Hi", "tg:5", "5:7", "Ann Lee", "5"]);
  });
  test("photo caption goes in with the largest photo's file_id", () => {
    const a = translateUpdate(msg({ caption: "what is this?", photo: [{ file_id: "small" }, { file_id: "big" }] }), bot(), me, 0);
    assert.ok(a.kind === "message" && a.message.text === "what is this?" && a.message.images![0]!.file_id === "big");
  });
  test("voice, audio (with its caption and mime_type) and video_note become a voice reference; in groups only when addressed", () => {
    const v = translateUpdate(msg({ voice: { file_id: "vo", file_unique_id: "u", duration: 7.4, mime_type: "audio/ogg", file_size: 900 } }), bot(), me, 0);
    assert.ok(v.kind === "message");
    assert.deepEqual([v.message.text, v.message.voice], ["", { kind: "voice", file_id: "vo", duration_s: 7, mime: "audio/ogg", size: 900 }]);
    const a = translateUpdate(
      msg({ caption: "послушайте", audio: { file_id: "au", file_unique_id: "u", duration: 125, mime_type: "audio/mpeg" } }),
      bot(),
      me,
      0,
    );
    assert.ok(a.kind === "message");
    assert.deepEqual([a.message.text, a.message.voice], ["послушайте", { kind: "audio", file_id: "au", duration_s: 125, mime: "audio/mpeg" }]);
    const n = translateUpdate(msg({ video_note: { file_id: "vn", file_unique_id: "u", length: 240, duration: 9 } }), bot(), me, 0);
    assert.ok(n.kind === "message");
    assert.deepEqual(n.message.voice, { kind: "video_note", file_id: "vn", duration_s: 9, mime: "video/mp4" });
    const group = { chat: { id: -100, type: "supergroup" }, voice: { file_id: "g", file_unique_id: "u", duration: 3 } };
    assert.equal(translateUpdate(msg(group), bot(), me, 0).kind, "ignore");
    const reply = translateUpdate(msg({ ...group, reply_to_message: { message_id: 1, from: { id: 666 } } }), bot(), me, 0);
    assert.ok(reply.kind === "message" && reply.message.voice?.file_id === "g");
  });
  test("stickers, joins, edits, channel posts and other bots are ignored", () => {
    assert.equal(translateUpdate(msg({ sticker: { file_id: "x" } }), bot(), me, 0).kind, "ignore");
    assert.equal(translateUpdate(msg({ new_chat_members: [{ id: 9 }] }), bot(), me, 0).kind, "ignore");
    assert.equal(translateUpdate({ update_id: 2, edited_message: { text: "x" } } as unknown as Update, bot(), me, 0).kind, "ignore");
    assert.equal(translateUpdate(msg({ text: "x", from: { id: 9, is_bot: true, first_name: "B" } }), bot(), me, 0).kind, "ignore");
  });
  test("commands: /start, /help@ShopBot; other bots' commands ignored", () => {
    assert.deepEqual(translateUpdate(msg({ text: "/start", entities: [{ type: "bot_command", offset: 0, length: 6 }] }), bot(), me, 0), {
      kind: "command",
      command: "start",
      chatId: 5,
      replyTo: undefined,
    });
    assert.equal(translateUpdate(msg({ text: "/help@ShopBot", entities: [{ type: "bot_command", offset: 0, length: 13 }] }), bot(), me, 0).kind, "command");
    assert.equal(translateUpdate(msg({ text: "/help@OtherBot", entities: [{ type: "bot_command", offset: 0, length: 14 }] }), bot(), me, 0).kind, "ignore");
  });
  test("groups: mention or reply to the bot (per-user thread), all, off", () => {
    const group = { id: -100, type: "supergroup", title: "G" };
    assert.equal(translateUpdate(msg({ chat: group, text: "hello all" }), bot(), me, 0).kind, "ignore");
    const m = translateUpdate(msg({ chat: group, text: "@shopbot сколько стоит?" }), bot(), me, 0);
    assert.ok(
      m.kind === "message" && m.message.text === "сколько стоит?" && m.message.threadKey === "tg:-100:5" && m.message.target!.reply_to_message_id === 7,
    );
    assert.equal(translateUpdate(msg({ chat: group, text: "and?", reply_to_message: { message_id: 3, from: { id: 666 } } }), bot(), me, 0).kind, "message");
    assert.equal(translateUpdate(msg({ chat: group, text: "hello all" }), bot("all"), me, 0).kind, "message");
    assert.equal(translateUpdate(msg({ chat: group, text: "@ShopBot hi" }), bot("off"), me, 0).kind, "ignore");
  });
});

describe("splitText", () => {
  test("keeps short text whole and splits long text under the limit at boundaries", () => {
    assert.deepEqual(splitText("short", 4096), ["short"]);
    const para = `${"a".repeat(3000)}\n\n${"b".repeat(3000)}`;
    assert.deepEqual(splitText(para, 4096), ["a".repeat(3000), "b".repeat(3000)]);
    const words = Array.from({ length: 2000 }, (_, i) => `w${i}`).join(" ");
    const parts = splitText(words, 100);
    assert.ok(parts.every((p) => p.length <= 100 && !p.startsWith(" ")));
    assert.equal(parts.join(" "), words);
    const emoji = "😀".repeat(3000);
    assert.equal(splitText(emoji, 4096).join(""), emoji, "surrogate pairs are never cut");
  });
});

describe("prompt variables", () => {
  test("{{bot_name}}, {{now}} in the bot's time zone, extras; unknown ones stay visible", () => {
    const t = Date.UTC(2026, 10, 21, 21, 30);
    assert.equal(
      renderPrompt("{{bot_name}} {{now}} {{date}} {{post_text}} {{nope}}", { botName: "b", timezone: "Europe/Moscow", nowMs: t, extra: { post_text: "P" } }),
      "b 2026-11-22 00:30 Europe/Moscow 2026-11-22 P {{nope}}",
    );
  });
});
