import { eventually, Harness, TOKEN } from "./harness.js";
import { userSays, waitForBotMessages } from "./telegram.js";

/** Environment the CLI needs for the harness bot's `${...}` variables. */
export const ENV = { OPENAI_API_KEY: "sk-test-key-123456", TG_TOKEN: TOKEN };

/**
 * A harness whose database holds, made by the real bot: in chat 101 `a1` answered, then `a2`
 * and `a3` failed (the model answered 500); in chat 102 `a4` left `received` as a crash leaves
 * it. The bot is stopped; the model echoes again. Returns the ids in that order.
 */
export async function seededHarness(dialect: "sqlite" | "mysql"): Promise<{ h: Harness; ids: number[] }> {
  const h = await Harness.start({ dialect });
  try {
    const echo = h.llm.respond;
    await userSays(h.telegram, TOKEN, 101, "a1");
    await waitForBotMessages(h.telegram, 101, 1);
    await eventually(async () => (await h.messages()).some((m) => m.text === "a1" && m.status === "answered"), 10_000, "a1 answered");
    h.llm.respond = () => ({ status: 500 });
    for (const text of ["a2", "a3"]) {
      await userSays(h.telegram, TOKEN, 101, text);
      await eventually(async () => (await h.messages()).some((m) => m.text === text && m.status === "failed"), 10_000, `${text} failed`);
    }
    await h.running!.stop(2000);
    h.running = undefined;
    h.llm.respond = echo;
    const id4 = await h.store.messages.insertIncoming({
      bot: "shop-tg",
      channel: "tg",
      thread_key: "tg:102",
      chat_id: "102",
      user_id: "102",
      user_name: "user102",
      text: "a4",
      dedupe_key: "102:1",
      channel_message_id: "1",
      meta: { kind: "messages" },
      status: "received",
      created_ms: Date.now(),
    });
    const rows = await h.messages();
    const id = (t: string) => Number(rows.find((m) => m.direction === "in" && m.text === t)!.id);
    return { h, ids: [id("a1"), id("a2"), id("a3"), id4!] };
  } catch (error) {
    await h.stop();
    throw error;
  }
}

/** Everything replay could change: messages, ledger and accounts, as JSON. */
export async function snapshot(h: Harness): Promise<string> {
  const db = h.store.database.db;
  return JSON.stringify({
    messages: await db.selectFrom("messages").selectAll().orderBy("id").execute(),
    ledger: await db.selectFrom("balance_ledger").selectAll().orderBy("id").execute(),
    accounts: await db.selectFrom("balance_accounts").selectAll().orderBy("account").execute(),
  });
}

/** Global options pointing the CLI at the harness's configs, database and logs. */
export function globals(h: Harness): string[] {
  return ["--config-dir", h.fixture.configDir, "--db", h.db.url, "--log-dir", h.fixture.logDir];
}
