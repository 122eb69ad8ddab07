import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, test } from "node:test";
import { openStore } from "../../src/storage/index.js";
import { finished, runBots, spawnBots } from "../support/cli.js";
import { createTestDatabase, dialects, type TestDatabase } from "../support/db.js";
import { Fixture } from "../support/fixture.js";
import { eventually, TOKEN } from "../support/harness.js";
import { FakeOpenAI } from "../support/openai-server.js";
import { startTelegram, userSays, waitForBotMessages } from "../support/telegram.js";

for (const dialect of dialects()) {
  describe(`bots start as a process (${dialect})`, () => {
    test("answers through bin/bots.js, and SIGTERM lets the answer in flight finish, flushes logs, exits 0", async () => {
      await withStartedBot(dialect, [], async ({ fx, db, server, llm, child }) => {
        await userSays(server, TOKEN, 42, "hello");
        await waitForBotMessages(server, 42, 1);
        llm.latencyMs = 1500;
        await userSays(server, TOKEN, 43, "slow one");
        await eventually(() => llm.requests.length === 2, 5000, "slow call started");
        child.kill("SIGTERM");
        const res = await finished(child, 20_000);
        assert.equal(res.code, 0, res.stderr);
        const [reply] = await waitForBotMessages(server, 43, 1, 1000);
        assert.equal(reply!.text, "echo: slow one", "the answer in flight was finished before exit");
        const log = readFileSync(`${fx.logDir}/shop-tg.log`, "utf8");
        assert.match(log, /"msg":"answer delivered"/);
        // Money in logs is in credits, as everywhere else: 5.00, never the stored hundredths (500).
        const delivered = log
          .split("\n")
          .filter((l) => l.includes('"msg":"answer delivered"'))
          .map((l) => JSON.parse(l) as Record<string, unknown>);
        assert.deepEqual(
          delivered.map((l) => [l.cost_credits, "cost" in l]),
          [
            ["5.00", false],
            ["5.00", false],
          ],
        );
        assert.ok(!log.includes("sk-live-secret-999") && !log.includes(TOKEN.split(":")[1]!), "secrets never reach the log");
        assert.match(readFileSync(`${fx.logDir}/bots.log`, "utf8"), /"msg":"stopped"/);
        const store = await openStore(db.url);
        try {
          assert.equal((await store.balance.get("default"))!.balance, 50000 - 1000);
        } finally {
          await store.close();
        }
      });
    });
  });
}

describe("bots start interrupted twice", () => {
  test("a second signal during the drain ends the process at once with exit 1, its log line flushed", async () => {
    await withStartedBot("sqlite", ["--drain-timeout", "120"], async ({ fx, server, llm, child }) => {
      llm.latencyMs = 60_000;
      await userSays(server, TOKEN, 44, "never answered in time");
      await eventually(() => llm.requests.length === 1, 5000, "slow call started");
      child.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 500));
      child.kill("SIGTERM");
      const res = await finished(child, 20_000);
      assert.equal(res.code, 1, res.stderr);
      const log = readFileSync(`${fx.logDir}/bots.log`, "utf8");
      assert.match(log, /"msg":"second signal: exiting without waiting"/);
      assert.doesNotMatch(log, /"msg":"stopped"/);
    });
  });
});

/**
 * Runs `bots start tg --http-port 0 …args` as a process for bot shop-tg (500 credits topped up)
 * against a Bot API emulator and a fake model, waits for its start banner, calls `fn`, then
 * stops the servers and removes the database and the folder.
 */
async function withStartedBot(
  dialect: "sqlite" | "mysql",
  args: string[],
  fn: (s: {
    fx: Fixture;
    db: TestDatabase;
    server: Awaited<ReturnType<typeof startTelegram>>["server"];
    llm: FakeOpenAI;
    child: ReturnType<typeof spawnBots>;
  }) => Promise<void>,
): Promise<void> {
  const fx = new Fixture();
  const db = await createTestDatabase(dialect);
  const { server, apiRoot } = await startTelegram();
  const llm = new FakeOpenAI();
  await llm.start();
  let child: ReturnType<typeof spawnBots> | undefined;
  try {
    fx.tgBot("shop-tg", { llmUrl: llm.url, apiRoot });
    fx.write(".env", `OPENAI_API_KEY=sk-live-secret-999\nTG_TOKEN=${TOKEN}\nDATABASE_URL=${db.url}\n`);
    const topup = await runBots(["balance", "add", "500", "--yes"], { cwd: fx.root });
    assert.equal(topup.code, 0, topup.stderr);
    child = spawnBots(["start", "tg", "--http-port", "0", ...args], { cwd: fx.root });
    const started = child;
    await eventually(() => started.out.stderr.includes("Running shop-tg (tg)"), 15_000, "start banner");
    await fn({ fx, db, server, llm, child: started });
  } finally {
    // A failed assertion leaves no process behind.
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await server.stop();
    await llm.stop();
    await db.drop();
    fx.cleanup();
  }
}

describe("bots start refuses to run", () => {
  test("a bad token fails at once naming the bot (exit 1)", async () => {
    const fx = new Fixture();
    const api = http.createServer((_req, res) => {
      res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ ok: false, error_code: 401, description: "Unauthorized" }));
    });
    await new Promise<void>((r) => api.listen(0, "127.0.0.1", r));
    try {
      fx.tgBot("shop-tg", { llmUrl: "http://127.0.0.1:9/v1", apiRoot: `http://127.0.0.1:${(api.address() as AddressInfo).port}` });
      const res = await runBots(["start", "--http-port", "0", "--db", `sqlite:${fx.root}/b.db`], {
        cwd: fx.root,
        env: { OPENAI_API_KEY: "k", TG_TOKEN: "999:bad-token-value" },
        timeoutMs: 20_000,
      });
      assert.equal(res.code, 1);
      assert.match(res.stderr, /bot shop-tg: Telegram refused the token \(401\)/);
      assert.match(res.stderr, /hint: check tg\.token/);
      assert.ok(!res.stderr.includes("bad-token-value"));
    } finally {
      api.close();
      fx.cleanup();
    }
  });

  test("a broken config names file, line and field (exit 2); an unknown target is a usage error", async () => {
    const fx = new Fixture();
    try {
      fx.write("prompts/p.md", "x");
      fx.bot(
        "shop-tg",
        ["channel: tg", "prompt: prompts/p.md", "llm:", "  model: m", "  api_key: ${OPENAI_API_KEY}", "  temprature: 0.3", "tg:", "  token: ${TG_TOKEN}"].join(
          "\n",
        ),
      );
      const res = await runBots(["start"], { cwd: fx.root, env: { TG_TOKEN: "1:a" } });
      assert.equal(res.code, 2);
      assert.match(res.stderr, /configs\/shop-tg\.yaml:5: llm\.api_key: environment variable OPENAI_API_KEY is not set/);
      const fixed = await runBots(["start"], { cwd: fx.root, env: { TG_TOKEN: "1:a", OPENAI_API_KEY: "k" } });
      assert.equal(fixed.code, 2);
      assert.match(fixed.stderr, /configs\/shop-tg\.yaml:6: llm\.temprature: unknown key \(did you mean 'temperature'\?\)/);
      fx.bot(
        "shop-tg",
        ["channel: tg", "prompt: prompts/p.md", "llm:", "  model: m", "  api_key: ${OPENAI_API_KEY}", "tg:", "  token: ${TG_TOKEN}"].join("\n"),
      );
      const target = await runBots(["start", "nosuchbot"], { cwd: fx.root, env: { TG_TOKEN: "1:a", OPENAI_API_KEY: "k" } });
      assert.equal(target.code, 2);
      assert.match(target.stderr, /'nosuchbot' is neither a bot nor a channel/);
    } finally {
      fx.cleanup();
    }
  });
});
