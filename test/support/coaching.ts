import assert from "node:assert/strict";
import type { Logger } from "pino";
import type { BotConfig } from "../../src/config/schema.js";
import type { ChannelSender } from "../../src/core/types.js";
import { coachingFeature, type CoachingFeature } from "../../src/features/coaching/feature.js";
import { buildFeatures } from "../../src/features/index.js";
import { llmFor } from "../../src/runner.js";
import type { Store } from "../../src/storage/index.js";
import type { OwnerFence } from "../../src/storage/owners.js";
import type { ManualClock } from "./clock.js";
import { Harness, TOKEN } from "./harness.js";
import { botMessages, userSays, waitForBotMessages } from "./telegram.js";

/** The bot YAML of a coaching test bot; `coaching` is the body of `features.coaching`. */
export function coachingYaml(coaching = "{ phrase_goals: false }"): string {
  return ["timezone: Europe/Moscow", "spam: { duplicate_window_s: 0, max_per_minute: 600 }", "features:", `  coaching: ${coaching}`].join("\n");
}

/**
 * A Telegram coaching bot on the emulator, running by a manual clock. With `withLlm` its feature
 * also has the bot's model and channel (`/week` words, `style: model`) and its scheduler loop
 * runs (one pass at start, then every `interval_s` of real time).
 */
export async function coachHarness(
  dialect: "sqlite" | "mysql",
  clock: ManualClock,
  o: { coaching?: string; apiRoot?: (root: string) => Promise<string>; llmYaml?: string; withLlm?: boolean } = {},
): Promise<Harness> {
  return Harness.start({
    dialect,
    extraYaml: coachingYaml(o.coaching),
    apiRoot: o.apiRoot,
    llmYaml: o.llmYaml,
    // Without `withLlm` the bot's own feature has neither channel nor model (no scheduler loop:
    // tests tick schedulers by hand); with it, `bots start` builds it as in production.
    startOptions: (h) =>
      o.withLlm
        ? { now: clock.now }
        : { now: clock.now, features: (bot: BotConfig, logger: Logger) => buildFeatures(bot, { store: h.store, logger, now: clock.now }) },
  });
}

/**
 * The scheduler of one `bots start` process: its own feature on the database, sending through
 * the running bot's channel (or `channel`), with the bot's model when `llm` is set.
 */
export function coachScheduler(
  h: Harness,
  clock: ManualClock,
  o: { store?: Store; channel?: ChannelSender; llm?: boolean; llmTimeoutMs?: number; fence?: OwnerFence } = {},
): CoachingFeature {
  const r = h.running!.bots[0]!;
  return coachingFeature(h.bot, h.bot.features.coaching!, {
    store: o.store ?? h.store,
    logger: r.logger,
    now: clock.now,
    channel: o.channel ?? r.worker,
    fence: o.fence,
    ...(o.llm
      ? { llm: llmFor(h.bot, r.logger, { retry: { baseMs: 20, maxMs: 200 }, maxRetries: 0, ...(o.llmTimeoutMs ? { timeoutMs: o.llmTimeoutMs } : {}) }) }
      : {}),
  });
}

/** Sends a text (or, with `extra`, any message fields) and waits for the bot's next message; returns its text. */
export async function say(h: Harness, user: number, text: string, extra: Record<string, unknown> = {}): Promise<string> {
  const before = botMessages(h.telegram, user).length;
  await userSays(h.telegram, TOKEN, user, text, extra);
  return (await waitForBotMessages(h.telegram, user, before + 1))[before]!.text;
}

/** Onboards a Berlin user (`phrase_goals: false`): one daily goal, reminder at 20:00. */
export async function onboardBerlin(h: Harness, id: number): Promise<void> {
  h.llm.respond = () => ({ text: "profile" });
  for (const text of ["/start", "Аня", "Europe/Berlin", "читать 20 минут", "20:00"]) await say(h, id, text);
  // /skip of the photos brings two messages: the profile, then the confirmation question.
  await userSays(h.telegram, TOKEN, id, "/skip");
  await waitForBotMessages(h.telegram, id, 7);
  await say(h, id, "да");
  assert.equal((await h.store.coaching.user(h.bot.name, String(id)))!.status, "active");
}

/** Proactive messages stored for a user's thread, oldest first. */
export async function proactiveRows(h: Harness, id: number) {
  const rows = await h.store.database.db
    .selectFrom("messages")
    .selectAll()
    .where("thread_key", "=", `tg:${id}`)
    .where("direction", "=", "out")
    .orderBy("id")
    .execute();
  return rows
    .filter((r) => r.meta && JSON.parse(r.meta).proactive)
    .map((r) => ({
      id: Number(r.id),
      created_ms: Number(r.created_ms),
      text: r.text,
      status: r.status,
      cost: Number(r.cost),
      model: r.model,
      kind: JSON.parse(r.meta!).kind as string | undefined,
    }));
}
