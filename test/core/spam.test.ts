import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { botConfigSchema } from "../../src/config/schema.js";
import { spamVerdict } from "../../src/core/spam.js";
import { openStore } from "../../src/storage/index.js";
import type { MessagesRepo } from "../../src/storage/messages.js";
import { createTestDatabase, dialects } from "../support/db.js";

const NOW = Date.UTC(2026, 10, 21, 12, 0, 0);

/** The bot's `spam:` section with defaults, as the config loader builds it. */
function spamOf(spam: Record<string, unknown>) {
  return botConfigSchema.parse({ name: "b", channel: "tg", prompt: "p.md", llm: { model: "m", api_key: "sk-test-000000" }, tg: { token: "1:abc" }, spam }).spam;
}

for (const dialect of dialects()) {
  describe(`spam verdict on stored messages (${dialect})`, () => {
    test("flood and duplicate come from one read of the user's recent messages; each window is its own", async () => {
      const db = await createTestDatabase(dialect);
      const store = await openStore(db.url);
      try {
        let reads = 0;
        const repo = new Proxy(store.messages, {
          get(target, prop, receiver) {
            if (prop === "userActivity") reads++;
            const v = Reflect.get(target, prop, receiver) as unknown;
            return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          },
        }) as MessagesRepo;
        let n = 0;
        const stored = (userId: string, text: string, agoMs: number) =>
          store.messages.insertIncoming({
            bot: "b",
            channel: "tg",
            thread_key: `tg:${userId}`,
            chat_id: userId,
            user_id: userId,
            user_name: null,
            text,
            dedupe_key: `tg:${++n}`,
            channel_message_id: String(n),
            meta: null,
            status: "received",
            created_ms: NOW - agoMs,
          });
        const spam = spamOf({ duplicate_window_s: 60, max_per_minute: 3 });
        const m = { bot: "b", userId: "7", text: "hello" };
        assert.equal(await spamVerdict(spam, repo, m, NOW), null);
        await stored("7", "hello", 10_000);
        assert.equal(await spamVerdict(spam, repo, m, NOW), "duplicate");
        assert.equal(await spamVerdict(spam, repo, { ...m, text: "other" }, NOW), null);
        assert.equal(reads, 3, "one read per verdict");
        // Another bot's or another user's same text is not a duplicate.
        assert.equal(await spamVerdict(spam, repo, { ...m, userId: "9" }, NOW), null);
        // Outside the flood minute: neither counted nor (with a 60 s window) a duplicate.
        await stored("10", "old", 61_000);
        assert.equal(await spamVerdict(spam, repo, { bot: "b", userId: "10", text: "old" }, NOW), null);
        // A window longer than the flood minute still finds an older same text.
        const long = spamOf({ duplicate_window_s: 600, max_per_minute: 3 });
        await stored("8", "again", 300_000);
        assert.equal(await spamVerdict(long, repo, { bot: "b", userId: "8", text: "again" }, NOW), "duplicate");
        assert.equal(await spamVerdict(long, repo, { bot: "b", userId: "8", text: "new" }, NOW), null, "the old message does not count for the flood minute");
        // Three in the last minute: the fourth is flood, which wins over duplicate.
        await stored("7", "two", 5_000);
        await stored("7", "three", 1_000);
        assert.equal(await spamVerdict(spam, repo, m, NOW), "flood");
        // The duplicate check off: the same text passes.
        const off = spamOf({ duplicate_window_s: 0, max_per_minute: 10 });
        assert.equal(await spamVerdict(off, repo, m, NOW), null);
      } finally {
        await store.close();
        await db.drop();
      }
    });
  });
}
