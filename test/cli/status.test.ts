import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { collectStatus } from "../../src/core/status.js";
import { loadBotConfigs } from "../../src/config/load.js";
import { openStore, type Store } from "../../src/storage/index.js";
import type { IncomingStatus } from "../../src/storage/schema.js";
import { bin, cli } from "../support/cli.js";
import { createTestDatabase, dialects } from "../support/db.js";
import { Fixture } from "../support/fixture.js";

const ENV = { OPENAI_API_KEY: "sk-test-key-123456", TG_TOKEN: "123456:TEST-token_abcdef" };

function fixture(): Fixture {
  const fx = new Fixture();
  fx.write("prompts/p.md", "You are {{bot_name}}.");
  const bot = (name: string, extra: string[]) =>
    fx.bot(
      name,
      [
        `name: ${name}`,
        "channel: tg",
        "prompt: prompts/p.md",
        "llm:",
        "  model: m",
        "  api_key: ${OPENAI_API_KEY}",
        "tg:",
        "  token: ${TG_TOKEN}",
        ...extra,
      ].join("\n"),
    );
  bot("shop-tg", []);
  bot("other-tg", ["enabled: false", "balance:", "  account: client-a", "  cost_per_reply: 2.5", "  stop_below: 1"]);
  return fx;
}

async function seed(store: Store, now: number): Promise<void> {
  const day = new Date(now);
  const yesterday = Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate()) - 1000;
  let n = 0;
  const incoming = async (status: IncomingStatus, at: number) =>
    (await store.messages.insertIncoming({
      bot: "shop-tg",
      channel: "tg",
      thread_key: "tg:1",
      chat_id: "1",
      user_id: "1",
      user_name: null,
      text: `m${++n}`,
      dedupe_key: `1:${n}`,
      channel_message_id: String(n),
      meta: null,
      status,
      created_ms: at,
    }))!;
  const answer = async (at: number) => {
    const id = await incoming("received", at);
    await store.messages.settle({
      incoming: { id, bot: "shop-tg", channel: "tg", thread_key: "tg:1", chat_id: "1" },
      text: "ok",
      channel_message_id: null,
      model: "m",
      prompt_tokens: 1,
      completion_tokens: 1,
      cost: 500,
      latency_ms: 1,
      created_ms: at,
    });
  };
  await answer(yesterday);
  await answer(now - 2000);
  await incoming("failed", now - 1500);
  await incoming("no_balance", now - 1200);
  await incoming("received", now - 1000);
  await store.balance.topUp("default", 1000);
  await store.balance.topUp("client-a", 1050);
}

for (const dialect of dialects()) {
  describe(`bots status (${dialect})`, () => {
    test("bots with channel and enabled, today's counts, last message, balances and replies left", async () => {
      const fx = fixture();
      const db = await createTestDatabase(dialect);
      const store = await openStore(db.url);
      try {
        const now = Date.now();
        await seed(store, now);
        const r = await cli(["--config-dir", fx.configDir, "--db", db.url, "--json", "status"], ENV);
        assert.equal(r.code, 0, r.stderr);
        const s = JSON.parse(r.stdout) as { bots: Array<Record<string, unknown>>; accounts: Array<Record<string, unknown>>; problems: string[] };
        assert.deepEqual(
          s.bots.map((b) => [b.name, b.channel, b.enabled, b.account, b.in, b.answered, b.failed, b.no_balance]),
          [
            ["other-tg", "tg", false, "client-a", 0, 0, 0, 0],
            ["shop-tg", "tg", true, "default", 4, 1, 1, 1],
          ],
        );
        assert.equal(s.bots[0]!.last_message_at, null);
        assert.equal(s.bots[1]!.last_message_at, new Date(now - 1000).toISOString());
        assert.deepEqual(s.accounts, [
          { account: "client-a", balance: "10.50", balance_hundredths: 1050, replies_left: 3 },
          { account: "default", balance: "10.00", balance_hundredths: 1000, replies_left: 2 },
        ]);
        assert.deepEqual(s.problems, []);

        const text = await cli(["--config-dir", fx.configDir, "--db", db.url, "status"], ENV);
        assert.equal(text.code, 0);
        assert.match(text.stdout, /BOT +CHANNEL +ENABLED +ACCOUNT +IN +ANSWERED +FAILED +NO BALANCE +LAST MESSAGE/);
        assert.match(text.stdout, /shop-tg +tg +yes +default +4 +1 +1 +1 +\d{4}-\d\d-\d\d \d\d:\d\d \+00:00/);
        assert.match(text.stdout, /other-tg +tg +no +client-a +0 +0 +0 +0 +-/);
        assert.match(text.stdout, /client-a +10\.50 +3/);
        assert.match(text.stdout, /2 message\(s\) unanswered today: bots replay --send/);

        // The same numbers from the core function.
        const report = await collectStatus(loadBotConfigs(fx.configDir, ENV).bots, store, now);
        assert.equal(report.bots.find((b) => b.name === "shop-tg")!.in, 4);
      } finally {
        await store.close();
        await db.drop();
        fx.cleanup();
      }
    });
  });
}

describe("bots status through bin/bots.js", () => {
  test("no database yet and a broken config are reported, exit 0; no database is created", async () => {
    const fx = fixture();
    const db = await createTestDatabase("sqlite");
    try {
      fx.bot("broken", "name: broken\nchannel: tg\n");
      const r = await bin(["--config-dir", fx.configDir, "--db", db.url, "status"], ENV);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^no database at .*test\.db yet: nothing stored/);
      assert.equal(existsSync(db.url.slice("sqlite:".length)), false, "status created no database");
      assert.match(r.stdout, /shop-tg +tg +yes +default +0 +0 +0 +0 +-/);
      assert.match(r.stdout, /No balance accounts yet/);
      assert.match(r.stdout, /config problems? \(run bots config check\):\n {2}.*broken\.yaml/);
    } finally {
      await db.drop();
      fx.cleanup();
    }
  });
});

for (const dialect of dialects()) {
  describe(`bots status: every bot file, the bot's timezone (${dialect})`, () => {
    test("a file with a missing variable is listed with its problem, a disabled bot is listed, counts start at the bot's midnight", async () => {
      const fx = fixture();
      const db = await createTestDatabase(dialect);
      const store = await openStore(db.url);
      try {
        fx.bot(
          "vk-shop",
          ["channel: vk", "prompt: prompts/p.md", "llm:", "  model: m", "  api_key: ${OPENAI_API_KEY}", "vk:", "  token: ${VK_TOKEN}", "  group_id: 1"].join(
            "\n",
          ),
        );
        fx.bot(
          "msk-tg",
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
        const now = Date.now();
        // Midnight in Moscow (UTC+3) comes 3 hours before midnight UTC: a message 1 hour before
        // Moscow's midnight is yesterday there; one just after Moscow's midnight is today.
        const { startOfDayMs } = await import("../../src/lib/zoned.js");
        const mskMidnight = startOfDayMs(now, "Europe/Moscow");
        let n = 0;
        for (const at of [mskMidnight - 3_600_000, mskMidnight + 1000]) {
          await store.messages.insertIncoming({
            bot: "msk-tg",
            channel: "tg",
            thread_key: "tg:9",
            chat_id: "9",
            user_id: "9",
            user_name: null,
            text: `t${++n}`,
            dedupe_key: `9:${n}`,
            channel_message_id: String(n),
            meta: null,
            status: "received",
            created_ms: at,
          });
        }
        const r = await cli(["--config-dir", fx.configDir, "--db", db.url, "--json", "status"], ENV);
        assert.equal(r.code, 0, r.stderr);
        const s = JSON.parse(r.stdout) as { bots: Array<Record<string, unknown> & { problems: string[] }> };
        assert.deepEqual(
          s.bots.map((b) => b.name),
          ["msk-tg", "other-tg", "shop-tg", "vk-shop"],
        );
        const msk = s.bots.find((b) => b.name === "msk-tg")!;
        assert.equal(msk.in, 1, "only the message after Moscow's midnight counts as today");
        assert.equal(msk.day_start, new Date(mskMidnight).toISOString());
        assert.equal(s.bots.find((b) => b.name === "other-tg")!.enabled, false);
        const vk = s.bots.find((b) => b.name === "vk-shop")!;
        assert.match(vk.problems.join("\n"), /vk-shop\.yaml:7: vk\.token: environment variable VK_TOKEN is not set/);

        const text = await cli(["--config-dir", fx.configDir, "--db", db.url, "status"], ENV);
        assert.equal(text.code, 0);
        assert.doesNotMatch(text.stdout, /No bot/);
        assert.match(text.stdout, /vk-shop +- +- .*vk\.token: environment variable VK_TOKEN is not set/);
        assert.match(text.stdout, /other-tg +tg +no /);
        assert.match(text.stdout, /msk-tg +tg +yes +default +1 /);
        // Times are each bot's local time with its offset: Moscow's last message at 00:00:01 there.
        const mskLast = new Date(mskMidnight + 1000 + 3 * 3_600_000).toISOString().slice(0, 16).replace("T", " ");
        assert.match(text.stdout, new RegExp(`msk-tg +tg +yes +default +1 +0 +0 +0 +${mskLast} \\+03:00`));

        // An account's times: its bots' zone when they agree; UTC (+00:00) when they differ.
        await store.balance.topUp("default", 500);
        const lastUtc = new Date((await store.balance.history("default", 1))[0]!.created_ms).toISOString().slice(0, 16).replace("T", " ");
        const mixed = await cli(["--config-dir", fx.configDir, "--db", db.url, "balance"], ENV);
        assert.match(mixed.stdout, new RegExp(`default +5\\.00 +.*topup \\+5\\.00 at ${lastUtc} \\+00:00`), "msk-tg (Moscow) and shop-tg (UTC) share default");
        fx.bot("shop-tg", readFileSync(path.join(fx.configDir, "shop-tg.yaml"), "utf8").replace("channel: tg", "channel: tg\ntimezone: Europe/Moscow"));
        const moscow = await cli(["--config-dir", fx.configDir, "--db", db.url, "balance", "history"], ENV);
        assert.match(moscow.stdout, / \d{4}-\d\d-\d\d \d\d:\d\d \+03:00 +default +topup/);
      } finally {
        await store.close();
        await db.drop();
        fx.cleanup();
      }
    });
  });
}
