import { BotHarnessBase } from "./bot-harness.js";
import { cli, type CliRun } from "./cli.js";
import { FakeTwoGis } from "./twogis-server.js";

/** Secret-looking values used in the test env (to check they never reach output). */
export const OPENAI_KEY = "sk-test-key-2gis-123456";

/** Options of {@link TwoGisSetup.start}. */
export interface TwoGisSetupOptions {
  dialect: "sqlite" | "mysql";
  /** Lines added under `2gis:` (indented by the helper). */
  twogis?: string[];
  /** Top-up before the first run, credits. @defaultValue 500 */
  balance?: number;
  /** Branch ids. @defaultValue ["70000001000000001"] */
  branches?: string[];
  prompt?: string;
  concurrency?: number;
  /** Extra top-level YAML. */
  extraYaml?: string;
}

/**
 * A 2GIS bot against local servers: the fake 2GIS API, FakeOpenAI, a fresh database of the
 * dialect and a project folder with `configs/shop-2gis.yaml`, `prompts/review.md` and `.env`.
 */
export class TwoGisSetup extends BotHarnessBase {
  dgis = new FakeTwoGis();
  branches: string[] = [];

  static async start(o: TwoGisSetupOptions): Promise<TwoGisSetup> {
    const s = new TwoGisSetup();
    await s.init(o);
    return s;
  }

  private async init(o: TwoGisSetupOptions): Promise<void> {
    await this.llm.start();
    await this.dgis.start();
    this.branches = o.branches ?? ["70000001000000001"];
    this.fixture.write(
      "prompts/review.md",
      o.prompt ?? "You answer reviews for {{bot_name}}. Rating {{rating}} by {{author_name}} on branch {{branch_id}}: {{review_text}}",
    );
    this.writeConfig(o);
    this.fixture.write(".env", `OPENAI_API_KEY=${OPENAI_KEY}\nDGIS_LOGIN=${this.dgis.login}\nDGIS_PASSWORD=${this.dgis.password}\n`);
    await this.openDatabase(o.dialect, o.balance);
  }

  /** (Re)writes the bot YAML. */
  writeConfig(o: Omit<TwoGisSetupOptions, "dialect">): void {
    this.fixture.bot(
      "shop-2gis",
      [
        "name: shop-2gis",
        "channel: 2gis",
        "prompt:",
        "  reviews: prompts/review.md",
        "llm:",
        "  model: test-model",
        "  api_key: ${OPENAI_API_KEY}",
        `  base_url: ${this.llm.url}`,
        `  concurrency: ${o.concurrency ?? 4}`,
        "  timeout_s: 10",
        "  max_retries: 0",
        "2gis:",
        `  api_base_url: ${this.dgis.url}`,
        "  login: ${DGIS_LOGIN}",
        "  password: ${DGIS_PASSWORD}",
        `  branch_ids: [${(o.branches ?? this.branches).map((b) => `"${b}"`).join(", ")}]`,
        ...(o.twogis ?? []).map((l) => `  ${l}`),
        o.extraYaml ?? "",
      ].join("\n"),
    );
  }

  /** Global options pointing at this setup. */
  get globalArgs(): string[] {
    return [
      "--config-dir",
      this.fixture.configDir,
      "--env-file",
      `${this.fixture.root}/.env`,
      "--db",
      this.db.url,
      "--log-dir",
      this.fixture.logDir,
      "--no-color",
    ];
  }

  /** Runs `bots <args>` in-process (the same program as bin/bots.js) and captures its output. */
  cli(...args: string[]): Promise<CliRun> {
    return cli([...this.globalArgs, ...args]);
  }

  /** Incoming messages of the bot, oldest first. */
  async incoming() {
    return this.store.database.db.selectFrom("messages").selectAll().where("direction", "=", "in").orderBy("id").execute();
  }

  async outgoing() {
    return this.store.database.db.selectFrom("messages").selectAll().where("direction", "=", "out").orderBy("id").execute();
  }

  async stop(): Promise<void> {
    await this.dgis.stop();
    await this.release();
  }
}

/** Asserts every review has exactly one posted answer; returns the counts by review id. */
export function answerCounts(dgis: FakeTwoGis): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of dgis.reviews) counts.set(r.id, dgis.answersTo(r.id).length);
  return counts;
}
