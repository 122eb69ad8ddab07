import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Update } from "telegraf/types";
import { translateUpdate } from "../../../src/channels/telegram/translate.js";
import type { BotConfig } from "../../../src/config/schema.js";
import { acceptedUpdates } from "../../../src/features/index.js";

const me = {
  id: 999,
  is_bot: true as const,
  first_name: "Bot",
  username: "shop_bot",
  can_join_groups: true,
  can_read_all_group_messages: false,
  supports_inline_queries: false,
};

function bot(leads: boolean): BotConfig {
  return { name: "shop", tg: { groups: "all" }, features: leads ? { leads: { required: ["name", "phone"] } } : {} } as unknown as BotConfig;
}

function contactUpdate(chatType: "private" | "group"): Update {
  return {
    update_id: 1,
    message: {
      message_id: 7,
      date: 0,
      chat: chatType === "private" ? { id: 42, type: "private", first_name: "Ann" } : { id: -5, type: "group", title: "g" },
      from: { id: 42, is_bot: false, first_name: "Ann" },
      contact: { phone_number: "79001234567", first_name: "Ann", last_name: "Lee", user_id: 42 },
    },
  } as unknown as Update;
}

describe("Telegram shared contact (Bot API Message.contact)", () => {
  test("becomes a pipeline message carrying the contact when leads are on", () => {
    const a = translateUpdate(contactUpdate("private"), bot(true), me, 1000, acceptedUpdates(bot(true)));
    assert.equal(a.kind, "message");
    if (a.kind !== "message") return;
    assert.deepEqual(a.message.contact, { phone: "79001234567", name: "Ann Lee", userId: "42" });
    assert.equal(a.message.text, "Мой контакт: Ann Lee, 79001234567");
    assert.equal(a.message.threadKey, "tg:42");
    assert.equal(a.message.dedupeKey, "42:7");
  });

  test("is ignored without features.leads, and in groups", () => {
    assert.equal(translateUpdate(contactUpdate("private"), bot(false), me, 1000, acceptedUpdates(bot(false))).kind, "ignore");
    assert.equal(translateUpdate(contactUpdate("group"), bot(true), me, 1000, acceptedUpdates(bot(true))).kind, "ignore");
  });
});
