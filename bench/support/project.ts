import { parseArgs } from "node:util";
import type { Fixture } from "../../test/support/fixture.js";

/**
 * Writes a project with one Telegram bot `bench-tg` into a fixture: a prompt, the bot's YAML
 * (local model at `llmUrl`, Bot API at `apiRoot`, other settings default) and a `.env` naming
 * the database.
 */
export function oneTelegramBot(fx: Fixture, o: { llmUrl: string; apiRoot: string; token: string; dbUrl: string }): void {
  fx.write("prompts/p.md", "Be brief.");
  fx.bot(
    "bench-tg",
    [
      "channel: tg",
      "prompt: prompts/p.md",
      "llm:",
      "  model: m",
      "  api_key: sk-bench-key-000000",
      `  base_url: ${o.llmUrl}`,
      "  timeout_s: 20",
      "tg:",
      `  token: ${o.token}`,
      `  api_root: ${o.apiRoot}`,
    ].join("\n"),
  );
  fx.write(".env", `DATABASE_URL=${o.dbUrl}\n`);
}

/**
 * Writes the bot of the load benches (bench/pipeline.ts, and ours in bench/peer.ts) into a
 * fixture: `bench-tg` with a one-line prompt, the local model at `llmUrl` with `concurrency`
 * calls in flight, no streaming (the plain peer does not stream; what streaming costs is measured
 * by bench/stream.ts), a flood limit no load reaches, and `history` turns when given.
 */
export function loadBenchBot(fx: Fixture, o: { llmUrl: string; apiRoot: string; token: string; concurrency: number; history?: number }): void {
  fx.write("prompts/p.md", "You are {{bot_name}}.");
  fx.bot(
    "bench-tg",
    [
      "channel: tg",
      "prompt: prompts/p.md",
      "llm:",
      "  model: bench",
      "  api_key: sk-bench",
      `  base_url: ${o.llmUrl}`,
      `  concurrency: ${o.concurrency}`,
      "  timeout_s: 30",
      "  stream: false",
      ...(o.history === undefined ? [] : [`history: { max_messages: ${o.history} }`]),
      "spam: { max_per_minute: 1000 }",
      "tg:",
      `  token: "${o.token}"`,
      `  api_root: ${o.apiRoot}`,
    ].join("\n"),
  );
}

/**
 * The load options of bench/pipeline.ts and bench/peer.ts (`--messages 1000 --chats 200
 * --latency 500 --concurrency 32 --hang 8000`, and `--db URL`), parsed from the command line.
 * @returns numbers (latency and hang in ms) and the database URL if given
 */
export function loadOptions(): { messages: number; chats: number; latency: number; concurrency: number; hang: number; db?: string } {
  const { values } = parseArgs({
    options: {
      messages: { type: "string", default: "1000" },
      chats: { type: "string", default: "200" },
      latency: { type: "string", default: "500" },
      concurrency: { type: "string", default: "32" },
      hang: { type: "string", default: "8000" },
      db: { type: "string" },
    },
  });
  return {
    messages: Number(values.messages),
    chats: Number(values.chats),
    latency: Number(values.latency),
    concurrency: Number(values.concurrency),
    hang: Number(values.hang),
    ...(values.db ? { db: values.db } : {}),
  };
}
