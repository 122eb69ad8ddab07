import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { openStore, type Store } from "../../src/storage/index.js";
import { cli } from "../support/cli.js";
import { createTestDatabase, dialects } from "../support/db.js";
import { Fixture } from "../support/fixture.js";

const ENV = { OPENAI_API_KEY: "sk-test-key-123456", TG_TOKEN: "123456:TEST-token_abcdef" };
const T0 = Date.parse("2026-11-20T21:30:00Z");

async function seed(store: Store): Promise<void> {
  let n = 0;
  const incoming = async (bot: string, chat: number, text: string, at: number, name: string) =>
    (await store.messages.insertIncoming({
      bot,
      channel: "tg",
      thread_key: `tg:${chat}`,
      chat_id: String(chat),
      user_id: String(chat),
      user_name: name,
      text,
      dedupe_key: `${chat}:${++n}`,
      channel_message_id: String(n),
      meta: null,
      status: "received",
      created_ms: at,
    }))!;
  const answer = async (bot: string, chat: number, id: number, text: string, at: number) =>
    store.messages.settle({
      incoming: { id, bot, channel: "tg", thread_key: `tg:${chat}`, chat_id: String(chat) },
      text,
      channel_message_id: null,
      model: "gpt-x",
      prompt_tokens: 12,
      completion_tokens: 30,
      cost: 500,
      latency_ms: 850,
      created_ms: at + 1000,
    });
  await answer("shop-tg", 42, await incoming("shop-tg", 42, "Сколько стоит доставка?", T0, "Anna"), "Доставка 300 ₽.", T0);
  const failed = await incoming("shop-tg", 42, "А самовывоз 100%?", T0 + 60_000, "Anna");
  await store.messages.setStatus(failed, "failed", { error: "TG_API: 403 Forbidden: bot was blocked by the user" });
  await answer("shop-tg", 7, await incoming("shop-tg", 7, "hello", T0 + 120_000, "Boris"), "hi", T0 + 120_000);
  await incoming("other-tg", 5, "elsewhere", T0 + 180_000, "Vera");
}

for (const dialect of dialects()) {
  describe(`bots dialogs (${dialect})`, () => {
    test("lists conversations, prints one as a chat in the bot's timezone, filters, pages and --json", async () => {
      const fx = new Fixture();
      fx.write("prompts/p.md", "x");
      fx.bot(
        "shop-tg",
        [
          "channel: tg",
          "timezone: Europe/Moscow",
          "prompt: prompts/p.md",
          "llm:",
          "  model: m",
          "  api_key: ${OPENAI_API_KEY}",
          "tg:",
          "  token: ${TG_TOKEN}",
        ].join("\n"),
      );
      const db = await createTestDatabase(dialect);
      const store = await openStore(db.url);
      const run = (...args: string[]) => cli(["--config-dir", fx.configDir, "--db", db.url, ...args], ENV);
      try {
        await seed(store);
        const all = await run("dialogs");
        assert.equal(all.code, 0, all.stderr);
        const order = [...all.stdout.matchAll(/^(\S+) +(tg:\d+) /gm)].map((m) => `${m[1]} ${m[2]}`);
        assert.deepEqual(order, ["other-tg tg:5", "shop-tg tg:7", "shop-tg tg:42"], "newest activity first");

        const list = await run("dialogs", "shop-tg");
        assert.match(list.stdout, /shop-tg +tg:42 +Anna \(42\) +3 +2026-11-21 00:31:00 +failed/, "times in Europe/Moscow, last status");
        assert.match(list.stdout, /shop-tg +tg:7 +Boris \(7\) +2 +2026-11-21 00:32:01 +answered/);

        const chat = await run("dialogs", "shop-tg", "tg:42");
        assert.equal(chat.code, 0, chat.stderr);
        assert.match(chat.stdout, /times in Europe\/Moscow/);
        assert.match(chat.stdout, /2026-11-21 00:30:00 +Anna \(42\) +answered/);
        assert.match(chat.stdout, /bot +gpt-x · 12\+30 tokens · 5\.00 credits · 850 ms/);
        assert.match(chat.stdout, /\n {4}Доставка 300 ₽\.\n/);
        assert.match(chat.stdout, /failed \(TG_API: 403 Forbidden: bot was blocked by the user\)/);

        const failedOnly = await run("--json", "dialogs", "shop-tg", "--status", "failed");
        const fl = JSON.parse(failedOnly.stdout) as { threads: Array<{ thread_key: string; messages: number }> };
        assert.deepEqual(
          fl.threads.map((t) => [t.thread_key, t.messages]),
          [["tg:42", 3]],
        );

        const grep = await run("--json", "dialogs", "shop-tg", "tg:42", "--grep", "100%");
        const rows = JSON.parse(grep.stdout) as Array<{ text: string; status: string; at: string }>;
        assert.deepEqual(
          rows.map((r) => [r.text, r.status]),
          [["А самовывоз 100%?", "failed"]],
          "% is literal in --grep",
        );
        assert.equal(rows[0]!.at, new Date(T0 + 60_000).toISOString());
        const noWildcard = await run("--json", "dialogs", "shop-tg", "--grep", "_");
        assert.deepEqual((JSON.parse(noWildcard.stdout) as { threads: unknown[] }).threads, []);

        const since = await run("--json", "dialogs", "--since", new Date(T0 + 100_000).toISOString());
        assert.deepEqual(
          (JSON.parse(since.stdout) as { threads: Array<{ thread_key: string }> }).threads.map((t) => t.thread_key),
          ["tg:5", "tg:7"],
        );

        const byUser = await run("dialogs", "shop-tg", "--user", "7");
        assert.match(byUser.stdout, /shop-tg · tg:7/);
        assert.doesNotMatch(byUser.stdout, /tg:42/);

        const p1 = JSON.parse((await run("--json", "dialogs", "shop-tg", "--limit", "1")).stdout) as {
          threads: Array<{ thread_key: string }>;
          next_before: number;
        };
        assert.deepEqual(
          p1.threads.map((t) => t.thread_key),
          ["tg:7"],
        );
        const p2 = JSON.parse((await run("--json", "dialogs", "shop-tg", "--limit", "1", "--before", String(p1.next_before))).stdout) as {
          threads: Array<{ thread_key: string }>;
          next_before: number | null;
        };
        assert.deepEqual(
          p2.threads.map((t) => t.thread_key),
          ["tg:42"],
        );
        const p3 = JSON.parse((await run("--json", "dialogs", "shop-tg", "--limit", "1", "--before", String(p2.next_before))).stdout) as { threads: unknown[] };
        assert.deepEqual(p3.threads, [], "no thread twice across pages");

        const bad = await run("dialogs", "shop-tg", "--status", "oops");
        assert.equal(bad.code, 2);
        const none = await run("dialogs", "shop-tg", "tg:999");
        assert.equal(none.code, 2);
        assert.match(none.stderr, /no matching messages/);
      } finally {
        await store.close();
        await db.drop();
        fx.cleanup();
      }
    });
  });
}
