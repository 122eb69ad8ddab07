import { loadBotConfigs } from "../../src/config/load.js";
import type { BotConfig } from "../../src/config/schema.js";
import { Fixture } from "./fixture.js";
import { FakeOpenAI } from "./openai-server.js";

/** Env for the fixture bot's variables. */
export const PROMPT_ENV = { OPENAI_API_KEY: "sk-test-key-123456", TG_TOKEN: "123456:TEST-token_abcdef" };

/**
 * A project folder with one Telegram bot `shop-tg` whose model is a local {@link FakeOpenAI}
 * (echoing by default). The Bot API root points at a closed port: nothing may be delivered.
 */
export async function promptFixture(cost = "2.5"): Promise<{ fx: Fixture; llm: FakeOpenAI; bot: BotConfig; stop(): Promise<void> }> {
  const fx = new Fixture();
  const llm = new FakeOpenAI();
  await llm.start();
  fx.write("prompts/shop.md", "You are {{bot_name}}, a shop assistant.");
  fx.bot(
    "shop-tg",
    [
      "name: shop-tg",
      "channel: tg",
      "prompt: prompts/shop.md",
      "llm:",
      "  model: test-model",
      "  api_key: ${OPENAI_API_KEY}",
      `  base_url: ${llm.url}`,
      "  timeout_s: 5",
      "  max_retries: 0",
      "balance:",
      `  cost_per_reply: ${cost}`,
      "tg:",
      "  token: ${TG_TOKEN}",
      "  api_root: http://127.0.0.1:9",
    ].join("\n"),
  );
  const { bots, problems } = loadBotConfigs(fx.configDir, PROMPT_ENV);
  if (problems.length) throw new Error(JSON.stringify(problems));
  return {
    fx,
    llm,
    bot: bots[0]!,
    stop: async () => {
      await llm.stop();
      fx.cleanup();
    },
  };
}
