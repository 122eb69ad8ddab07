import { readFileSync } from "node:fs";
import { VkWorker, type VkWorkerOptions } from "../../src/channels/vk/worker.js";
import type { BotConfig } from "../../src/config/schema.js";
import { createLogging, type Logging } from "../../src/logging.js";
import { HttpServer } from "../../src/http/server.js";
import { startBots, type RunningBots } from "../../src/runner.js";
import type { Store } from "../../src/storage/index.js";
import { BotHarnessBase } from "./bot-harness.js";
import { FakeVk } from "./vk-server.js";

/** Secrets of the test VK bot. */
export const VK_SECRET = "callback-secret-xyz";
export const VK_CONFIRMATION = "a1b2c3d4";

/** Options of {@link VkHarness.start}. */
export interface VkHarnessOptions {
  dialect: "sqlite" | "mysql";
  mode?: "callback" | "longpoll";
  /** Extra YAML lines inside the `vk:` section (indented by the caller). */
  vkYaml?: string;
  /** Extra top-level YAML (features:, timezone:...). */
  extraYaml?: string;
  /** Replaces `vk.api_base_url` (e.g. a proxy in front of the fake VK, whose URL it gets). */
  apiBaseUrl?: (vkUrl: string) => string | Promise<string>;
  /** Extra YAML lines inside the `llm:` section (indented by the caller). */
  llmYaml?: string;
  /** Prompt for comments. @defaultValue "Comment prompt. Post: {{post_text}}" */
  commentsPrompt?: string;
  /** Clock for the bot (pipeline, features, receive times), epoch ms. */
  now?: () => number;
  /** Top-up before start, credits. @defaultValue 500 */
  balance?: number;
  /** Token written into the bot's config. @defaultValue the token the fake VK accepts */
  botToken?: string;
  /** Overrides of the worker's tuning (sendRetries...). */
  worker?: VkWorkerOptions;
}

/**
 * A VK bot started through `startBots`, like `bots start vk`, against local servers: the fake
 * VK API ({@link FakeVk}), an OpenAI-compatible server, and a fresh database of the dialect.
 */
export class VkHarness extends BotHarnessBase {
  vk = new FakeVk();
  logging!: Logging;
  bot!: BotConfig;
  running?: RunningBots;
  port = 0;
  /** The HTTP server `bots start` would have (`--http-port 0`): callbacks arrive at `/vk/<bot>` on it. */
  http = new HttpServer();

  static async start(o: VkHarnessOptions): Promise<VkHarness> {
    const h = new VkHarness();
    try {
      await h.init(o);
    } catch (error) {
      await h.stop();
      throw error;
    }
    return h;
  }

  get groupId(): number {
    return this.vk.groupId;
  }

  /** The callback endpoint's URL. */
  get callbackUrl(): string {
    return `http://127.0.0.1:${this.port}/vk/club-vk`;
  }

  private async init(o: VkHarnessOptions): Promise<void> {
    await this.vk.start();
    await this.llm.start();
    this.port = await this.http.listen({ port: 0 });
    const apiBaseUrl = o.apiBaseUrl ? await o.apiBaseUrl(this.vk.url) : this.vk.url;
    this.fixture.write("prompts/messages.md", "You are {{bot_name}}, answering private messages.");
    this.fixture.write("prompts/comments.md", o.commentsPrompt ?? "Comment prompt. Post: {{post_text}}");
    this.fixture.bot(
      "club-vk",
      [
        "name: club-vk",
        "channel: vk",
        "prompt: { messages: prompts/messages.md, comments: prompts/comments.md }",
        "llm:",
        "  model: test-model",
        "  api_key: ${OPENAI_API_KEY}",
        `  base_url: ${this.llm.url}`,
        "  timeout_s: 5",
        ...(o.llmYaml ? [o.llmYaml] : []),
        "vk:",
        "  token: ${VK_TOKEN}",
        `  group_id: ${this.vk.groupId}`,
        `  mode: ${o.mode ?? "callback"}`,
        `  api_base_url: ${apiBaseUrl}`,
        "  callback:",
        "    confirmation: ${VK_CONFIRM}",
        "    secret: ${VK_SECRET}",
        o.vkYaml ?? "",
        o.extraYaml ?? "",
      ].join("\n"),
    );
    this.bot = this.loadBot({ OPENAI_API_KEY: "sk-test-key-123456", VK_TOKEN: o.botToken ?? this.vk.token, VK_CONFIRM: VK_CONFIRMATION, VK_SECRET });
    await this.openDatabase(o.dialect, o.balance);
    this.logging = createLogging({ logDir: this.fixture.logDir, console: false, level: "debug", secrets: [this.vk.token, "sk-test-key-123456", VK_SECRET] });
    this.options = o;
    await this.startBots();
  }

  private options!: VkHarnessOptions;

  /**
   * Starts the bot (again) on the same database and fake VK, as a new `bots start` would.
   * @param store the store the bot uses (e.g. one whose recording is slowed); defaults to the harness's
   */
  async startBots(store: Store = this.store): Promise<void> {
    this.running = await startBots({
      bots: [this.bot],
      store,
      logging: this.logging,
      now: this.options.now,
      createWorker: (bot, logger, deps) => VkWorker.create(bot, logger, deps, { backoffMs: 20, pollingWaitMs: 50, ...this.options.worker }),
      llm: { retry: { baseMs: 20, maxMs: 200 } },
      http: this.http,
    });
  }

  /** Stops the bot (drain up to `drainMs`) but keeps the database and servers, for {@link startBots}. */
  async stopBots(drainMs = 2000): Promise<void> {
    await this.running?.stop(drainMs);
    this.running = undefined;
  }

  /** The bot's log lines so far (flushed first), parsed. */
  async logLines(): Promise<Array<Record<string, unknown>>> {
    await this.logging.flush();
    const text = readFileSync(`${this.fixture.logDir}/club-vk.log`, "utf8");
    return text
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  get pipeline() {
    return this.running!.bots[0]!.pipeline;
  }

  async stop(): Promise<void> {
    await this.running?.stop(2000);
    await this.http.close();
    await this.logging?.flush();
    await this.vk.stop();
    await this.release();
  }
}
