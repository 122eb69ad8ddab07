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
