import type { TelegramServer } from "telegram-test-api/lib/telegramServer.js";
import type { BotConfig } from "../../src/config/schema.js";
import { TelegramWorker } from "../../src/channels/telegram/worker.js";
import { createLogging, type Logging } from "../../src/logging.js";
import { HttpServer } from "../../src/http/server.js";
import { Pipeline, type PipelineDeps } from "../../src/core/pipeline.js";
import type { IncomingMessage } from "../../src/core/types.js";
import { llmFor, startBots, type RunningBots, type StartOptions } from "../../src/runner.js";
import { BotHarnessBase } from "./bot-harness.js";
import { startBotApiProxy } from "./botapi-proxy.js";
import type { FakeBotFiles } from "./images.js";
import { startTelegram } from "./telegram.js";

/** A private Telegram text message to the harness bot from chat (and user) `chat`, the `i`-th of its thread (dedupe key `chat:i`). */
export function privateText(chat: number, i: number, text: string): IncomingMessage {
  return {
    bot: "shop-tg",
    channel: "tg",
    kind: "messages",
    chatId: String(chat),
    userId: String(chat),
    userName: null,
    text,
    threadKey: `tg:${chat}`,
    dedupeKey: `${chat}:${i}`,
    channelMessageId: String(i),
    receivedMs: Date.now(),
  };
}

/** Test bot token (the emulator accepts any token of the right shape). */
export const TOKEN = "123456:TEST-token_abcdef";

/** Options of {@link startHarness}. */
export interface HarnessOptions {
  dialect: "sqlite" | "mysql";
  /** Extra YAML appended to the bot config (top-level keys). */
  extraYaml?: string;
  /** Extra YAML lines inside the `llm:` section (indented by the caller), e.g. `  vision: {...}`. */
  llmYaml?: string;
  /** Replaces the `tg:` section's api_root (e.g. a proxy). */
  apiRoot?: (emulatorRoot: string) => Promise<string> | string;
  /**
   * Files the Bot API serves (getFile and downloads): the bot then reaches the emulator through
   * a proxy that serves them (test/support/botapi-proxy.ts), stopped with the harness.
   */
  files?: FakeBotFiles;
  /** Top-up before start, credits. @defaultValue 500 */
  balance?: number;
  concurrency?: number;
  /** The model call's `llm.timeout_s`. @defaultValue 5 */
  timeoutS?: number;
  prompt?: string;
  start?: boolean;
  /** Extra variables for `${VAR}` in the config. */
  env?: Record<string, string>;
  /** Overrides of `startBots` options (e.g. features built with a manual clock). */
  startOptions?: (h: Harness) => Partial<StartOptions>;
}

/**
 * Everything an end-to-end Telegram test needs, real and local: the Bot API emulator, an
 * OpenAI-compatible server, a fresh database of the dialect, a bot YAML in a temp folder, and
 * the bot started through the same `startBots` that `bots start` uses.
 */
export class Harness extends BotHarnessBase {
  telegram!: TelegramServer;
  logging!: Logging;
  bot!: BotConfig;
  running?: RunningBots;
  /** Stops the file-serving Bot API proxy (`files`), if any. */
  private stopProxy?: () => Promise<void>;

  static async start(o: HarnessOptions): Promise<Harness> {
    const h = new Harness();
    await h.init(o);
    return h;
  }

  private async init(o: HarnessOptions): Promise<void> {
    const tg = await startTelegram();
    this.telegram = tg.server;
    await this.llm.start();
    let apiRoot = o.apiRoot ? await o.apiRoot(tg.apiRoot) : tg.apiRoot;
    if (o.files) {
      const proxy = await startBotApiProxy(apiRoot, () => undefined, o.files);
      this.stopProxy = () => proxy.stop();
      apiRoot = proxy.url;
    }
    this.fixture.write("prompts/shop.md", o.prompt ?? "You are {{bot_name}}. Now: {{now}}.");
    this.fixture.bot(
      "shop-tg",
      [
        "name: shop-tg",
        "channel: tg",
        "prompt: prompts/shop.md",
        "llm:",
        "  model: test-model",
        "  api_key: ${OPENAI_API_KEY}",
        `  base_url: ${this.llm.url}`,
        `  concurrency: ${o.concurrency ?? 8}`,
        `  timeout_s: ${o.timeoutS ?? 5}`,
        ...(o.llmYaml ? [o.llmYaml] : []),
        "tg:",
        "  token: ${TG_TOKEN}",
        `  api_root: ${apiRoot}`,
        o.extraYaml ?? "",
      ].join("\n"),
    );
    this.bot = this.loadBot({ OPENAI_API_KEY: "sk-test-key-123456", TG_TOKEN: TOKEN, ...o.env });
    await this.openDatabase(o.dialect, o.balance);
    this.logging = createLogging({ logDir: this.fixture.logDir, console: false, level: "debug", secrets: [TOKEN, "sk-test-key-123456"] });
    this.startOverrides = o.startOptions;
    this.httpPort = await this.http.listen({ port: 0 });
    if (o.start !== false) await this.startBots();
  }

  private startOverrides?: (h: Harness) => Partial<StartOptions>;

  /** The HTTP server `bots start` would have (`--http-port 0`): webhooks arrive at `/tg/<bot>` on it. */
  http = new HttpServer();
  httpPort = 0;

  /** Starts the bot with fast test timings. */
  async startBots(): Promise<void> {
    this.running = await startBots({
      bots: [this.bot],
      store: this.store,
      logging: this.logging,
      createWorker: (bot, logger) => TelegramWorker.create(bot, logger, { idlePauseMs: 20, backoffMs: 50 }),
      llm: { retry: { baseMs: 20, maxMs: 200 } },
      http: this.http,
      ...this.startOverrides?.(this),
    });
  }

  get pipeline() {
    return this.running!.bots[0]!.pipeline;
  }

  /**
   * A pipeline of the harness bot with no channel worker: each answer goes to `onSend` (chat_id,
   * text) and gets channel message id 1, 2, …. `deps` overrides the rest: `store` (e.g. one
   * behind a TCP proxy; the harness store by default), `catchUp`, `leaseFresh`, `recordOnly`….
   */
  pipelineTo(onSend: (chatId: string, text: string) => void, deps: Partial<PipelineDeps> = {}): Pipeline {
    const logger = this.logging.forBot("shop-tg");
    let n = 0;
    return new Pipeline({
      bot: this.bot,
      store: this.store,
      llm: llmFor(this.bot, logger),
      channel: { send: async (to, reply) => (onSend(to.chatId, reply.text), { channelMessageId: String(++n) }) },
      logger,
      ...deps,
    });
  }

  async stop(): Promise<void> {
    await this.running?.stop(2000);
    await this.http.close();
    await this.logging?.flush();
    await this.stopProxy?.();
    await this.telegram?.stop();
    await this.release();
  }
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function eventually<T>(check: () => Promise<T> | T, timeoutMs = 10_000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
