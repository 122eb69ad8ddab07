import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ensureBuilt, finished, runBots, spawnBots } from "../support/cli.js";
import { createTestDatabase, dialects } from "../support/db.js";
import { Fixture } from "../support/fixture.js";
import { eventually } from "../support/harness.js";
import { FakeOpenAI } from "../support/openai-server.js";
import { startTelegram, userSays, waitForBotMessages } from "../support/telegram.js";

const CAFE_TOKEN = "700001:cafe-token-abcdef";

/**
 * A project with three bots: shop-tg, whose TG_TOKEN is not set (broken), cafe-tg (valid, on
 * the Bot API emulator and a local model) and coach (valid, disabled, features.coaching).
 */
async function brokenShop(apiRoot: string, llmUrl: string): Promise<Fixture> {
  const fx = new Fixture();
  fx.write("prompts/p.md", "Be brief.");
  const llm = ["llm:", "  model: m", "  api_key: ${OPENAI_API_KEY}", `  base_url: ${llmUrl}`, "  max_retries: 0"];
  fx.bot("shop-tg", ["channel: tg", "prompt: prompts/p.md", ...llm, "tg:", "  token: ${TG_TOKEN}", `  api_root: ${apiRoot}`].join("\n"));
  fx.bot("cafe-tg", ["channel: tg", "prompt: prompts/p.md", ...llm, "tg:", "  token: ${CAFE_TOKEN}", `  api_root: ${apiRoot}`].join("\n"));
  fx.bot(
    "coach",
    [
      "channel: tg",
      "enabled: false",
      "prompt: prompts/p.md",
      ...llm,
      "tg:",
      "  token: ${CAFE_TOKEN}",
      `  api_root: ${apiRoot}`,
      "features:",
      "  coaching: {}",
    ].join("\n"),
  );
  return fx;
}

const PROBLEM = /configs\/shop-tg\.yaml:\d+: tg\.token: environment variable TG_TOKEN is not set/;
const WARNING = /^warning: 1 other bot file has problems and was skipped: configs\/shop-tg\.yaml \(bots config check lists them\)$/m;

for (const dialect of dialects()) {
  describe(`a broken bot file does not block commands about other bots (${dialect})`, () => {
    test("start cafe-tg answers with a one-line warning; start with no target runs the valid bots and lists shop-tg; coaching stats of another bot works", async () => {
      const db = await createTestDatabase(dialect);
      const { server, apiRoot } = await startTelegram();
      const llm = new FakeOpenAI();
      await llm.start();
      const fx = await brokenShop(apiRoot, llm.url);
      const env = { OPENAI_API_KEY: "sk-test-123456", CAFE_TOKEN, DATABASE_URL: db.url };
      try {
        await ensureBuilt();
        assert.equal((await runBots(["balance", "add", "100", "--yes"], { cwd: fx.root, env })).code, 0);
        for (const [args, banner] of [
          [["start", "cafe-tg"], "Running cafe-tg (tg)"],
          [["start"], "Running cafe-tg (tg)"],
        ] as const) {
          const child = spawnBots([...args, "--http-port", "0"], { cwd: fx.root, env });
          try {
            await eventually(() => child.out.stderr.includes(banner), 20_000, `${args.join(" ")}: start banner; stderr: ${child.out.stderr}`);
          } finally {
            if (child.exitCode === null) child.kill("SIGTERM");
          }
          const res = await finished(child, 20_000);
          assert.equal(res.code, 0, res.stderr);
          if (args.length === 1) {
            assert.match(
              res.stderr,
              /not started: shop-tg \(configs\/shop-tg\.yaml:\d+: tg\.token: environment variable TG_TOKEN is not set \(add it to \.env or the environment\)\)/,
            );
            assert.ok(!res.stderr.includes("coach"), "a disabled bot is neither started nor listed");
          } else {
            assert.match(res.stderr, WARNING);
          }
        }
        // It really runs: an answer goes through the pipeline of cafe-tg.
        const child = spawnBots(["start", "cafe-tg", "--http-port", "0"], { cwd: fx.root, env });
        try {
          await eventually(() => child.out.stderr.includes("Running cafe-tg"), 20_000, "start banner");
          await userSays(server, CAFE_TOKEN, 42, "hello");
          assert.equal((await waitForBotMessages(server, 42, 1))[0]!.text, "echo: hello");
        } finally {
          child.kill("SIGTERM");
          assert.equal((await finished(child, 20_000)).code, 0);
        }

        const stats = await runBots(["coaching", "stats", "coach"], { cwd: fx.root, env });
        assert.equal(stats.code, 0, stats.stderr);
        assert.match(stats.stdout, /^coach \(last 7 days/);
        assert.match(stats.stderr, WARNING);
      } finally {
        await server.stop();
        await llm.stop();
        await db.drop();
        fx.cleanup();
      }
    });
  });
}

describe("a broken bot file: what still refuses", () => {
  test("prompt test of another bot and of shop-tg itself (its channel token is not needed); nosuch is no bot; start shop-tg, --strict and config check exit 2", async () => {
    const llm = new FakeOpenAI();
    await llm.start();
    const fx = await brokenShop("http://127.0.0.1:9", llm.url);
    const env = { OPENAI_API_KEY: "sk-test-123456", CAFE_TOKEN, DATABASE_URL: `sqlite:${fx.root}/data/bots.db` };
    try {
      const cafe = await runBots(["prompt", "test", "cafe-tg", "hi"], { cwd: fx.root, env });
      assert.equal(cafe.code, 0, cafe.stderr);
      assert.match(cafe.stdout, /^echo: hi\n/);
      // For prompt test shop-tg's only problem (the channel token) does not count.
      assert.equal(cafe.stderr, "");
      const shop = await runBots(["prompt", "test", "shop-tg", "hello"], { cwd: fx.root, env });
      assert.equal(shop.code, 0, shop.stderr);
      assert.match(shop.stdout, /^echo: hello\n/);
      const nosuch = await runBots(["prompt", "test", "nosuch", "hi"], { cwd: fx.root, env });
      assert.equal(nosuch.code, 2);
      assert.match(nosuch.stderr, /error: no bot named 'nosuch'/);
      assert.ok(!nosuch.stderr.includes("TG_TOKEN"), nosuch.stderr);

      for (const args of [
        ["start", "shop-tg"],
        ["start", "--strict"],
        ["start", "shop-tg", "cafe-tg"],
      ]) {
        const r = await runBots([...args, "--http-port", "0"], { cwd: fx.root, env, timeoutMs: 20_000 });
        assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, PROBLEM);
      }
      // replay (and poll, report) name their bots: another file's problem is a warning.
      assert.equal((await runBots(["balance", "add", "10", "--yes"], { cwd: fx.root, env })).code, 0);
      const replay = await runBots(["replay", "--bot", "cafe-tg"], { cwd: fx.root, env });
      assert.equal(replay.code, 0, replay.stderr);
      assert.match(replay.stderr, WARNING);
      const replayShop = await runBots(["replay", "--bot", "shop-tg"], { cwd: fx.root, env });
      assert.equal(replayShop.code, 2, replayShop.stderr);
      assert.match(replayShop.stderr, PROBLEM);
      const check = await runBots(["config", "check"], { cwd: fx.root, env });
      assert.equal(check.code, 2);
      assert.match(check.stderr, PROBLEM);
      // With no valid bot left, a plain start has nothing to run: exit 2 with the problems.
      const alone = await runBots(["start", "--http-port", "0"], {
        cwd: fx.root,
        env: { OPENAI_API_KEY: "sk-test-123456", DATABASE_URL: env.DATABASE_URL },
        timeoutMs: 20_000,
      });
      assert.equal(alone.code, 2, alone.stderr);
      assert.match(alone.stderr, PROBLEM);
      assert.match(alone.stderr, /cafe-tg\.yaml:\d+: tg\.token: environment variable CAFE_TOKEN is not set/);
    } finally {
      await llm.stop();
      fx.cleanup();
    }
  });
});
