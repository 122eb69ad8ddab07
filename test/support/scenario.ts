import assert from "node:assert/strict";
import type { TelegramServer } from "telegram-test-api/lib/telegramServer.js";
import { openStore, type Store } from "../../src/storage/index.js";
import { ensureBuilt, finished, spawnBots } from "./cli.js";
import { createTestDatabase, type TestDatabase } from "./db.js";
import { Fixture } from "./fixture.js";
import { eventually, TOKEN } from "./harness.js";
import { FakeOpenAI } from "./openai-server.js";
import { startTelegram } from "./telegram.js";

export type Child = ReturnType<typeof spawnBots>;

/**
 * One scenario of `bots` processes (durability, scale-out): the Bot API emulator, the local model, a fresh database and a
 * project folder with one Telegram bot; `bots` runs as real `bin/bots.js` processes that the
 * test starts, stops and kills.
 */
export class Scenario {
  fx = new Fixture();
  llm = new FakeOpenAI();
  telegram!: TelegramServer;
  db!: TestDatabase;
  store!: Store;
  children: Child[] = [];

  static async create(dialect: "sqlite" | "mysql", o: { concurrency?: number; resumeWithin?: string; balance?: number } = {}): Promise<Scenario> {
    await ensureBuilt();
    const s = new Scenario();
    const tg = await startTelegram();
    s.telegram = tg.server;
    await s.llm.start();
    s.db = await createTestDatabase(dialect);
    s.fx.write("prompts/p.md", "Be brief.");
    s.fx.bot(
      "shop-tg",
      [
        "channel: tg",
        "prompt: prompts/p.md",
        "llm:",
        "  model: m",
        "  api_key: ${OPENAI_API_KEY}",
        `  base_url: ${s.llm.url}`,
        `  concurrency: ${o.concurrency ?? 4}`,
        "  timeout_s: 20",
        // Load tests send several messages per chat quickly.
        "spam: { max_per_minute: 100, duplicate_window_s: 0 }",
        "tg:",
        "  token: ${TG_TOKEN}",
        `  api_root: ${tg.apiRoot}`,
        ...(o.resumeWithin ? ["recovery:", `  resume_within: ${o.resumeWithin}`] : []),
      ].join("\n"),
    );
    s.fx.write(".env", `OPENAI_API_KEY=sk-test-key-123456\nTG_TOKEN=${TOKEN}\nDATABASE_URL=${s.db.url}\n`);
    s.store = await openStore(s.db.url);
    await s.store.balance.topUp("default", (o.balance ?? 1000) * 100);
    return s;
  }

  /** `bots start tg` as a process; resolves once it runs. */
  async start(extra: string[] = []): Promise<Child> {
    const child = spawnBots(["start", "tg", "--http-port", "0", ...extra], { cwd: this.fx.root });
    this.children.push(child);
    await eventually(() => child.out.stderr.includes("Running shop-tg (tg)") || child.exitCode !== null, 20_000, "start banner");
    assert.equal(child.exitCode, null, child.out.stderr);
    return child;
  }

  async incoming() {
    const rows = await this.store.database.db.selectFrom("messages").selectAll().where("direction", "=", "in").orderBy("id").execute();
    return rows.map((r) => ({ ...r, id: Number(r.id), cost: r.cost === null ? null : Number(r.cost), created_ms: Number(r.created_ms) }));
  }

  async countStatus(status: string): Promise<number> {
    return (await this.incoming()).filter((r) => r.status === status).length;
  }

  /** Reservations never refunded whose message is not answered: money held for nothing. */
  async openReservations(): Promise<number> {
    const rows = await this.store.database.db
      .selectFrom("balance_ledger as r")
      .innerJoin("messages as m", "m.id", "r.message_id")
      .select("r.id")
      .where("r.reason", "=", "reserve")
      .where("m.status", "not in", ["answered", "unconfirmed"])
      .where((eb) => eb.not(eb.exists(eb.selectFrom("balance_ledger as f").select("f.id").whereRef("f.ref_id", "=", "r.id"))))
      .execute();
    return rows.length;
  }

  /** The books: ledger sum equals the balance, and what replies cost equals what answered messages say they cost. */
  async assertBooks(initial: number): Promise<void> {
    const balance = (await this.store.balance.get("default"))!.balance;
    assert.equal(await this.store.balance.ledgerSum("default"), balance, "the ledger sums to the balance");
    const charged = (await this.incoming()).filter((r) => r.status === "answered").reduce((a, r) => a + (r.cost ?? 0), 0);
    assert.equal(initial - balance, charged, "credits charged = the cost of the answers recorded");
    assert.equal(await this.openReservations(), 0, "no reservation is left open");
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

