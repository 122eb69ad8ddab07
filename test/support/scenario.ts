import assert from "node:assert/strict";
import SQLite from "better-sqlite3";
import type { TelegramServer } from "telegram-test-api/lib/telegramServer.js";
import { openStore, type Store } from "../../src/storage/index.js";
import { ensureBuilt, finished, spawnBots } from "./cli.js";
import { createTestDatabase, type TestDatabase } from "./db.js";
import { Fixture } from "./fixture.js";
import { eventually, TOKEN } from "./harness.js";
import { FakeOpenAI } from "./openai-server.js";
import { startTelegram } from "./telegram.js";

export type Child = ReturnType<typeof spawnBots>;

/** Reservations of a store never refunded whose message is not answered (or unconfirmed): money held for nothing. */
export async function openReservations(store: Store): Promise<number> {
  const rows = await store.database.db
    .selectFrom("balance_ledger as r")
    .innerJoin("messages as m", "m.id", "r.message_id")
    .select("r.id")
    .where("r.reason", "=", "reserve")
    .where("m.status", "not in", ["answered", "unconfirmed"])
    .where((eb) => eb.not(eb.exists(eb.selectFrom("balance_ledger as f").select("f.id").whereRef("f.ref_id", "=", "r.id"))))
    .execute();
  return rows.length;
}

/** A Telegram bot of a scenario: its config name and Bot API token. */
export interface ScenarioBot {
  name: string;
  token: string;
}

/**
 * One scenario of `bots` processes (durability, scale-out): the Bot API emulator, the local model, a fresh database and a
 * project folder with one Telegram bot (`shop-tg`, token {@link TOKEN}) or `bots: N` of them
 * (`bot-1`…`bot-N`, distinct tokens); `bots` runs as real `bin/bots.js` processes that the
 * test starts, stops and kills. Every bot's `tg.api_root` is `${TG_API_ROOT}` when a process's
 * environment sets it (a per-instance Bot API proxy), else the emulator.
 */
export class Scenario {
  fx = new Fixture();
  llm = new FakeOpenAI();
  telegram!: TelegramServer;
  db!: TestDatabase;
  store!: Store;
  children: Child[] = [];
  bots: ScenarioBot[] = [];
  /** Run by {@link close} after the children are killed and before the servers stop (proxies). */
  closers: Array<() => Promise<void>> = [];

  /** `bots`: that many Telegram bots (`bot-1`…) instead of `shop-tg`; `extraYaml`: more lines of each bot's YAML (e.g. `features:`). */
  static async create(
    dialect: "sqlite" | "mysql",
    o: { concurrency?: number; resumeWithin?: string; balance?: number; bots?: number; extraYaml?: string } = {},
  ): Promise<Scenario> {
    await ensureBuilt();
    const s = new Scenario();
    const tg = await startTelegram();
    s.telegram = tg.server;
    await s.llm.start();
    s.db = await createTestDatabase(dialect);
    s.fx.write("prompts/p.md", "Be brief.");
    s.bots =
      o.bots === undefined
        ? [{ name: "shop-tg", token: TOKEN }]
        : Array.from({ length: o.bots }, (_, i) => ({ name: `bot-${i + 1}`, token: `${700001 + i}:TEST-token_bot${i + 1}` }));
    const tokenVar = (i: number) => (o.bots === undefined ? "TG_TOKEN" : `TG_TOKEN_${i + 1}`);
    for (const [i, bot] of s.bots.entries())
      s.fx.bot(
        bot.name,
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
          `  token: \${${tokenVar(i)}}`,
          `  api_root: \${TG_API_ROOT:-${tg.apiRoot}}`,
          ...(o.resumeWithin ? ["recovery:", `  resume_within: ${o.resumeWithin}`] : []),
          ...(o.extraYaml ? [o.extraYaml] : []),
        ].join("\n"),
      );
    const tokens = s.bots.map((b, i) => `${tokenVar(i)}=${b.token}\n`).join("");
    s.fx.write(".env", `OPENAI_API_KEY=sk-test-key-123456\n${tokens}DATABASE_URL=${s.db.url}\n`);
    s.store = await openStore(s.db.url);
    await s.store.balance.topUp("default", (o.balance ?? 1000) * 100);
    return s;
  }

  /** `bots start tg` as a process with extra environment (over `.env`); resolves once it runs. */
  async start(extra: string[] = [], env: Record<string, string> = {}): Promise<Child> {
    const child = spawnBots(["start", "tg", "--http-port", "0", ...extra], { cwd: this.fx.root, env });
    this.children.push(child);
    // Printed once the bots are started, whether this instance owns them or stands by.
    await eventually(() => child.out.stderr.includes("Press Ctrl-C to stop.") || child.exitCode !== null, 20_000, "start banner");
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
  openReservations(): Promise<number> {
    return openReservations(this.store);
  }

  /** The books: ledger sum equals the balance, and what replies cost equals what answered messages say they cost. */
  async assertBooks(initial: number): Promise<void> {
    const balance = (await this.store.balance.get("default"))!.balance;
    assert.equal(await this.store.balance.ledgerSum("default"), balance, "the ledger sums to the balance");
    const charged = (await this.incoming()).filter((r) => r.status === "answered").reduce((a, r) => a + (r.cost ?? 0), 0);
    assert.equal(initial - balance, charged, "credits charged = the cost of the answers recorded");
    assert.equal(await this.openReservations(), 0, "no reservation is left open");
  }

  /**
   * SIGSTOPs `child` at a moment when none of the incoming rows of `bots` (all when omitted) is
   * `delivering` (between its claim and its record, where a crash leaves `unconfirmed` by design)
   * and `ready` holds for those rows, and (SQLite) it holds no write lock; otherwise resumes it
   * and tries again a few ms later. A process paused inside a SQLite write keeps the file's lock
   * until it resumes (docs/scaling.md, "Pause inside a transaction"): no instance could take over.
   * @returns those rows as they were at the pause
   * @throws Error when no such moment comes in 500 tries
   */
  async pauseOutsideDelivery(child: Child, bots?: string[], ready: (rows: Awaited<ReturnType<Scenario["incoming"]>>) => boolean = () => true) {
    for (let i = 0; i < 500; i++) {
      child.kill("SIGSTOP");
      const rows = (await this.incoming()).filter((r) => !bots || bots.includes(r.bot));
      if (!rows.some((r) => r.status === "delivering") && ready(rows) && this.sqliteWritable()) return rows;
      child.kill("SIGCONT");
      await new Promise((r) => setTimeout(r, 3 + Math.random() * 10));
    }
    throw new Error("never found a moment without an answer being delivered");
  }

  /** SQLite only (true on MySQL): whether a write can start within 300 ms, i.e. no paused process holds the lock. */
  sqliteWritable(): boolean {
    if (this.db.dialect !== "sqlite") return true;
    const conn = new SQLite(this.db.url.slice("sqlite:".length), { timeout: 300 });
    try {
      conn.exec("BEGIN IMMEDIATE");
      conn.exec("ROLLBACK");
      return true;
    } catch (error) {
      if (/^SQLITE_BUSY/.test((error as { code?: string }).code ?? "")) return false;
      throw error;
    } finally {
      conn.close();
    }
  }

  /** SIGKILL outside any delivery of `bots` (see {@link pauseOutsideDelivery}); resolves once the child is gone. */
  async killOutsideDelivery(child: Child, bots?: string[]): Promise<void> {
    await this.pauseOutsideDelivery(child, bots);
    child.kill("SIGKILL");
    await finished(child, 10_000);
  }

  async close(): Promise<void> {
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await Promise.all(this.children.map((c) => (c.exitCode === null && c.signalCode === null ? finished(c, 5000) : undefined)));
    for (const c of this.closers) await c();
    await this.store?.close();
    await this.telegram?.stop();
    await this.llm.stop();
    await this.db?.drop();
    this.fx.cleanup();
  }
}
