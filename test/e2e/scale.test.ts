import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import type { TelegramServer } from "telegram-test-api/lib/telegramServer.js";
import { openStore, type Store } from "../../src/storage/index.js";
import { ensureBuilt, finished, runBots, spawnBots } from "../support/cli.js";
import { createTestDatabase, dialects, type TestDatabase } from "../support/db.js";
import { Fixture } from "../support/fixture.js";
import { eventually, TOKEN } from "../support/harness.js";
import { FakeOpenAI } from "../support/openai-server.js";
import { botMessages, startTelegram, userSays } from "../support/telegram.js";

type Child = ReturnType<typeof spawnBots>;

interface StatusJson {
  instances: Array<{ id: string; alive: boolean; bots_owned: string[] }>;
  owners: Array<{ bot: string; owner: string | null; epoch: number }>;
}

/** Two `bin/bots.js start` instances of one Telegram bot on one database. */
class Scale {
  fx = new Fixture();
  llm = new FakeOpenAI();
  telegram!: TelegramServer;
  db!: TestDatabase;
  store!: Store;
  children: Child[] = [];

  static async create(dialect: "sqlite" | "mysql"): Promise<Scale> {
    await ensureBuilt();
    const s = new Scale();
    const tg = await startTelegram();
    s.telegram = tg.server;
    await s.llm.start();
    s.db = await createTestDatabase(dialect);
    s.fx.write("prompts/p.md", "Be brief.");
    s.fx.bot(
      "shop-tg",
      ["channel: tg", "prompt: prompts/p.md", "llm:", "  model: m", "  api_key: ${OPENAI_API_KEY}", `  base_url: ${s.llm.url}`, "  timeout_s: 20", "spam: { max_per_minute: 100, duplicate_window_s: 0 }", "tg:", "  token: ${TG_TOKEN}", `  api_root: ${tg.apiRoot}`].join("\n"),
    );
    s.fx.write(".env", `OPENAI_API_KEY=sk-test-key-123456\nTG_TOKEN=${TOKEN}\nDATABASE_URL=${s.db.url}\n`);
    s.store = await openStore(s.db.url);
    await s.store.balance.topUp("default", 1000 * 100);
    return s;
  }

  async start(id: string): Promise<Child> {
    const child = spawnBots(["start", "tg", "--http-port", "0", "--instance-id", id, "--lease-ttl", "2"], { cwd: this.fx.root });
    this.children.push(child);
    await eventually(() => child.out.stderr.includes("Running shop-tg (tg)") || child.exitCode !== null, 20_000, "start banner");
    assert.equal(child.exitCode, null, child.out.stderr);
    return child;
  }

  async status(): Promise<StatusJson> {
    const r = await runBots(["status", "--json"], { cwd: this.fx.root });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as StatusJson;
  }

  async close(): Promise<void> {
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await Promise.all(this.children.map((c) => (c.exitCode === null && c.signalCode === null ? finished(c, 5000) : undefined)));
    await this.store?.close();
    await this.telegram?.stop();
    await this.llm.stop();
    await this.db?.drop();
    this.fx.cleanup();
  }
}

for (const dialect of dialects()) {
  describe(`scale-out: instances own bots, through bin/bots.js (${dialect})`, () => {
    const open: Scale[] = [];
    after(async () => {
      for (const s of open) await s.close();
    });

    test("a second instance owns nothing while the first lives; after kill -9 of the first it takes the bot over (epoch 2), recovers and answers every message once, in order", async () => {
      const s = await Scale.create(dialect);
      open.push(s);
      const a = await s.start("inst-a");
      const b = await s.start("inst-b");
      let st = await s.status();
      assert.deepEqual(st.owners, [{ bot: "shop-tg", owner: "inst-a", epoch: 1 }]);
      assert.deepEqual(st.instances.map((i) => [i.id, i.alive, i.bots_owned]), [["inst-a", true, ["shop-tg"]], ["inst-b", true, []]]);
      const chats = [3001, 3002, 3003];
      for (let i = 0; i < 2; i++) for (const c of chats) await userSays(s.telegram, TOKEN, c, `c${c} m${i}`);
      await eventually(() => chats.every((c) => botMessages(s.telegram, c).length === 2), 20_000, "answered by inst-a");
      a.kill("SIGKILL");
      await finished(a, 10_000);
      for (let i = 2; i < 4; i++) for (const c of chats) await userSays(s.telegram, TOKEN, c, `c${c} m${i}`);
      await eventually(() => chats.every((c) => botMessages(s.telegram, c).length === 4), 20_000, "answered by inst-b after the take-over");
      await new Promise((r) => setTimeout(r, 500));
      for (const c of chats) assert.deepEqual(botMessages(s.telegram, c).map((m) => m.text), [0, 1, 2, 3].map((i) => `echo: c${c} m${i}`), `chat ${c}: once each, in order`);
      st = await s.status();
      assert.deepEqual(st.owners, [{ bot: "shop-tg", owner: "inst-b", epoch: 2 }]);
      assert.match(b.out.stderr, /took over shop-tg from inst-a/);
      const runs = await s.store.database.db.selectFrom("recoveries").select("holder").execute();
      assert.deepEqual(runs.map((r) => r.holder), ["inst-a", "inst-b"], "each owner recovered once when it took the bot");
      b.kill("SIGTERM");
      const done = await finished(b, 20_000);
      assert.equal(done.code, 0, done.stderr);
      st = await s.status();
      assert.deepEqual(st.owners, [{ bot: "shop-tg", owner: null, epoch: 2 }], "a clean stop gives the bot back");
      assert.deepEqual(st.instances.map((i) => i.id), ["inst-a"], "the stopped instance's row is gone; the killed one's stays (dead)");
    });
  });
}
