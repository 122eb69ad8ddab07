import { formatProblem, loadBotConfigs } from "../../src/config/load.js";
import type { BotConfig } from "../../src/config/schema.js";
import { openStore, type Store } from "../../src/storage/index.js";
import { createTestDatabase, type TestDatabase } from "./db.js";
import { Fixture } from "./fixture.js";
import { FakeOpenAI } from "./openai-server.js";

/**
 * What every bot test setup shares, whatever the channel: a temporary project folder, the local
 * OpenAI-compatible server, and a fresh database of the dialect with a topped-up balance.
 * Channel harnesses (Telegram, VK, 2GIS) extend it with their API server.
 */
export class BotHarnessBase {
  fixture = new Fixture();
  llm = new FakeOpenAI();
  db!: TestDatabase;
  store!: Store;

  /**
   * Creates the test's own database and tops up account `default`.
   * @param balance credits to add; 0 adds nothing. @defaultValue 500
   */
  protected async openDatabase(dialect: "sqlite" | "mysql", balance = 500): Promise<void> {
    this.db = await createTestDatabase(dialect);
    this.store = await openStore(this.db.url);
    if (balance > 0) await this.store.balance.topUp("default", Math.round(balance * 100));
  }

  /**
   * Loads the fixture's config dir, which must hold exactly the bot under test.
   * @throws Error listing every config problem
   */
  protected loadBot(env: Record<string, string>): BotConfig {
    const { bots, problems } = loadBotConfigs(this.fixture.configDir, env);
    if (problems.length) throw new Error(problems.map(formatProblem).join("\n"));
    return bots[0]!;
  }

  /** Stored messages, oldest first, with numeric columns as numbers on both dialects. */
  async messages() {
    const rows = await this.store.database.db.selectFrom("messages").selectAll().orderBy("id").execute();
    return rows.map((r) => ({
      ...r,
      id: Number(r.id),
      cost: r.cost === null ? null : Number(r.cost),
      reply_to_id: r.reply_to_id === null ? null : Number(r.reply_to_id),
    }));
  }

  /** Balance of account `default`, hundredths. */
  async balance(): Promise<number> {
    return (await this.store.balance.get("default"))?.balance ?? 0;
  }

  /** Closes the database and the model server, drops the database, removes the folder. */
  protected async release(): Promise<void> {
    await this.store?.close();
    await this.llm.stop();
    await this.db?.drop();
    this.fixture.cleanup();
  }
}
