import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { TelegramServer } from "telegram-test-api/lib/telegramServer.js";
import { ensureBuilt, finished, spawnBots } from "../support/cli.js";
import { createTestDatabase } from "../support/db.js";
import { Fixture } from "../support/fixture.js";
import { eventually, TOKEN } from "../support/harness.js";
import { FakeOpenAI } from "../support/openai-server.js";
import { startTelegram, userSays, waitForBotMessages } from "../support/telegram.js";

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

/** The value of one sample line `name{labels} value` in a Prometheus exposition. */
function sample(text: string, line: RegExp): number | undefined {
  for (const l of text.split("\n")) if (line.test(l)) return Number(l.split(" ").pop());
  return undefined;
}

describe("bots start: /metrics, /healthz, /readyz", () => {
  test("counters move with answers, no secret shows; /healthz goes 503 naming the bot while the Bot API is down and 200 after", async () => {
    await ensureBuilt();
    const fx = new Fixture();
    const db = await createTestDatabase("sqlite");
    let { server, apiRoot } = await startTelegram();
    const tgPort = Number(new URL(apiRoot).port);
    const llm = new FakeOpenAI();
    await llm.start();
    try {
      fx.tgBot("shop-tg", { llmUrl: llm.url, apiRoot, extra: ["balance: { cost_per_reply: 0 }"] });
      const bots = spawnBots(["start", "tg", "--http-port", "0", "--health-threshold", "1"], {
        cwd: fx.root,
        env: { OPENAI_API_KEY: "sk-metrics-secret-777", TG_TOKEN: TOKEN, DATABASE_URL: db.url },
      });
      try {
        const port = Number(await eventually(() => /HTTP on 127\.0\.0\.1:(\d+)/.exec(bots.out.stderr)?.[1], 15_000, "HTTP port line"));
        await eventually(async () => (await get(port, "/readyz")).status === 200, 15_000, "ready");
        assert.equal((await get(port, "/healthz")).status, 200);

        await userSays(server, TOKEN, 42, "hello");
        await userSays(server, TOKEN, 43, "hi there");
        await waitForBotMessages(server, 42, 1);
        await waitForBotMessages(server, 43, 1);
        const m: string = await eventually(
          async () => {
            const r = await get(port, "/metrics");
            return sample(r.body, /^bots_answers_total\{bot="shop-tg",channel="tg"\}/) === 2 ? r.body : undefined;
          },
          10_000,
          "answers counted",
        ).then((b) => b!);
        assert.equal(sample(m, /^bots_messages_total\{bot="shop-tg",channel="tg",status="answered"\}/), 2);
        assert.equal(sample(m, /^bots_model_latency_seconds_count\{bot="shop-tg",model="m"\}/), 2);
        assert.ok((sample(m, /^bots_model_tokens_total\{bot="shop-tg",model="m",kind="prompt"\}/) ?? 0) > 0);
        assert.match(m, /^bots_queue_depth\{bot="shop-tg"\} 0$/m);
        assert.match(m, /^bots_messages_waiting\{bot="shop-tg"\} 0$/m);
        assert.match(m, /^process_cpu_user_seconds_total /m);
        assert.ok(!m.includes("sk-metrics-secret-777") && !m.includes(TOKEN) && !m.includes(TOKEN.split(":")[1]!), "no secret in /metrics");

        await server.stop();
        const down: string = await eventually(
          async () => {
            const r = await get(port, "/healthz");
            return r.status === 503 ? r.body : undefined;
          },
          20_000,
          "503 while the Bot API is down",
        ).then((b) => b!);
        const body = JSON.parse(down) as { status: string; failing: Array<{ bot: string; reason: string }> };
        assert.equal(body.status, "failing");
        assert.equal(body.failing[0]!.bot, "shop-tg");
        assert.match(body.failing[0]!.reason, /getUpdates/);
        assert.ok(!down.includes(TOKEN.split(":")[1]!), "no token in /healthz");

        server = new TelegramServer({ port: tgPort, host: "127.0.0.1", storeTimeout: 600 });
        await server.start();
        await eventually(async () => (await get(port, "/healthz")).status === 200, 40_000, "200 after the Bot API returns");

        bots.kill("SIGTERM");
        const res = await finished(bots, 20_000);
        assert.equal(res.code, 0, res.stderr);
      } finally {
        bots.kill("SIGKILL");
      }
    } finally {
      await server.stop().catch(() => undefined);
      await llm.stop();
      await db.drop();
      fx.cleanup();
    }
  });
});
