import type { Logger } from "pino";
import type { CoachingConfig } from "../../config/features.js";
import type { BotConfig } from "../../config/schema.js";
import type { ChannelSender } from "../../core/types.js";
import type { LlmClient } from "../../llm/client.js";
import type { CoachingRepo, CoachingUser } from "../../storage/coaching.js";
import type { Store } from "../../storage/index.js";
import type { OwnerFence } from "../../storage/owners.js";
import { checkinDay, type Day } from "./rules.js";
import { fill, TEXTS, type TextKey } from "./texts.js";

/** Dependencies of the coaching feature (see `FeatureDeps`). */
export interface CoachingDeps {
  store: Store;
  logger: Logger;
  /** Clock, epoch ms UTC: days, reminders and the schedule run by it. */
  now: () => number;
  /** Waits by that clock. @defaultValue setTimeout */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** The bot's channel, for proactive messages; without it no reminders are sent. */
  channel?: ChannelSender;
  /** The bot's model, for model-written reminders and weekly words; without it they are templates. */
  llm?: LlmClient;
  /** Scale-out: this instance's ownership of the bot; proactive sends are conditional on it. */
  fence?: OwnerFence;
}

/**
 * What the parts of the coaching feature (onboarding, commands, facts, scheduler) share: one per
 * feature instance, that is per bot, built by {@link coachingContext}. It holds no per-user or
 * per-message state: that lives in the database (`coaching_users`, see storage/coaching.ts).
 */
export interface CoachingContext {
  readonly bot: BotConfig;
  /** `features.coaching` of the bot, as config/features.ts parsed it (defaults filled in). */
  readonly cfg: CoachingConfig;
  readonly deps: CoachingDeps;
  /** `deps.store.coaching`. */
  readonly repo: CoachingRepo;
  /** `deps.logger` with `feature: "coaching"`. */
  readonly log: Logger;
  /** Aborted when the feature stops: the scheduler ends its pass, proactive sends give up. */
  readonly signal: AbortSignal;
  /** True for `language: en` (button labels and a few words written here, not in texts.ts). */
  readonly en: boolean;
  /** The text `key` in the bot's language, or its `texts:` override, with `{name}` placeholders filled from `vars`. */
  t(key: TextKey, vars?: Record<string, string | number>): string;
  /** The user's check-in day now (YYYY-MM-DD in their zone, starting at their `day_starts_at`), by `deps.now`. */
  today(u: Pick<CoachingUser, "timezone" | "day_starts_at">): Day;
}

/** The context of one coaching feature instance; `signal` is the feature's stop signal. */
export function coachingContext(bot: BotConfig, cfg: CoachingConfig, deps: CoachingDeps, signal: AbortSignal): CoachingContext {
  return {
    bot,
    cfg,
    deps,
    repo: deps.store.coaching,
    log: deps.logger.child({ feature: "coaching" }),
    signal,
    en: cfg.language === "en",
    t: (key, vars) => fill(cfg.texts[key] ?? TEXTS[cfg.language][key], vars),
    today: (u) => checkinDay(deps.now(), u.timezone, u.day_starts_at),
  };
}
