import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ensureBuilt, finished, spawnBots } from "../support/cli.js";
import { createTestDatabase, dialects } from "../support/db.js";
import { Fixture } from "../support/fixture.js";
import { eventually, TOKEN } from "../support/harness.js";
import { FakeOpenAI } from "../support/openai-server.js";
import { startTelegram } from "../support/telegram.js";

for (const dialect of dialects()) {
  describe(`a second bots start of the same bot (${dialect})`, () => {
    test("says who runs the bot and that it stands by, then takes over when the first stops", async () => {
      await ensureBuilt();
      const fx = new Fixture();
      const db = await createTestDatabase(dialect);
      const { server, apiRoot } = await startTelegram();
      const llm = new FakeOpenAI();
      await llm.start();
      const children: Array<ReturnType<typeof spawnBots>> = [];
      try {
        fx.tgBot("shop-tg", { llmUrl: llm.url, apiRoot });
        fx.write(".env", `OPENAI_API_KEY=sk-live-secret-999\nTG_TOKEN=${TOKEN}\nDATABASE_URL=${db.url}\n`);
        const args = ["start", "shop-tg", "--http-port", "off", "--lease-ttl", "2"];
        const first = spawnBots([...args, "--instance-id", "first"], { cwd: fx.root });
        children.push(first);
        await eventually(() => first.out.stderr.includes("Running shop-tg (tg)"), 20_000, "first start banner");
        const second = spawnBots([...args, "--instance-id", "second"], { cwd: fx.root });
        children.push(second);
        await eventually(() => /stands by/.test(second.out.stderr), 20_000, "second start banner");
        assert.match(
          second.out.stderr,
          new RegExp(`shop-tg is run by instance first on \\S+ \\(pid ${first.pid}\\); this instance stands by and takes over if it stops`),
        );
        assert.doesNotMatch(second.out.stderr, /Running shop-tg/, "the standby does not claim to run the bot");
        first.kill("SIGTERM");
        assert.equal((await finished(first, 20_000)).code, 0);
        await eventually(() => /owning shop-tg/.test(second.out.stderr), 30_000, "the standby takes the bot over");
        second.kill("SIGTERM");
        assert.equal((await finished(second, 20_000)).code, 0, second.out.stderr);
      } finally {
        for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
        await server.stop();
        await llm.stop();
        await db.drop();
        fx.cleanup();
      }
    });
  });
}
