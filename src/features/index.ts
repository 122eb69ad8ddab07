import type { Logger } from "pino";
import type { BotConfig } from "../config/schema.js";
import type { Feature } from "../core/pipeline.js";
import { Mailer, type MailerOptions, type MailSender } from "../notify/email.js";
import type { Store } from "../storage/index.js";
import type { AcceptedUpdates, ChannelSender } from "../core/types.js";
import type { LlmClient } from "../llm/client.js";
import type { OwnerFence } from "../storage/owners.js";
import { COACHING_ACCEPTS, coachingFeature } from "./coaching/feature.js";
import { deadlineFeature } from "./deadline.js";
import { LEADS_ACCEPTS, leadsFeature } from "./leads.js";
import { reportFeature } from "./report.js";

/** What features may use: the same injected dependencies as the pipeline. */
export interface FeatureDeps {
  store: Store;
  logger: Logger;
  /** Clock, epoch ms UTC. */
  now: () => number;
  /** Environment (SMTP settings and the like). */
  env?: Record<string, string>;
  /** Waits `ms` by the clock of `now`, resolving early on abort (tests inject a manual clock). @defaultValue setTimeout */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** SMTP tuning (tests shorten the back-off). */
  mail?: MailerOptions & { reportBackoffMs?: number };
  /** The bot's channel, for features that write first (coaching reminders). */
  channel?: ChannelSender;
  /** The bot's model, for features that write first with it (coaching `style: model`). */
  llm?: LlmClient;
  /** Scale-out: this instance's ownership of the bot; proactive sends are fenced on it. */
  fence?: OwnerFence;
}

/**
 * What the features a bot's config enables take from its channel beyond text and pictures
 * (each feature's `accepts`), without building them: for a pipeline that only records
 * (`PipelineDeps.accepts`), which runs no feature but must take the same updates.
 */
export function acceptedUpdates(bot: BotConfig): AcceptedUpdates {
  return { ...(bot.features.leads ? LEADS_ACCEPTS : {}), ...(bot.features.coaching ? COACHING_ACCEPTS : {}) };
}

/**
 * Builds the features a bot's config enables, in pipeline order. Each feature is a gate
 * (stage 4), tools for the model, and/or background work started with the bot.
 */
export function buildFeatures(bot: BotConfig, deps: FeatureDeps): Feature[] {
  const features: Feature[] = [];
  if (bot.features.deadline) features.push(deadlineFeature(bot, bot.features.deadline, deps));
  const mailer = (): MailSender | null => (bot.smtp ? new Mailer(bot.smtp, deps.mail) : null);
  const f = bot.features;
  if (f.leads) features.push(leadsFeature(bot, f.leads, { store: deps.store, logger: deps.logger, now: deps.now, sleep: deps.sleep, mailer: mailer() }));
  if (f.report) {
    const m = mailer();
    // The schema requires smtp with report; a bot without it has no mail to send.
    if (m)
      features.push(
        reportFeature(bot, f.report, {
          store: deps.store,
          logger: deps.logger,
          now: deps.now,
          sleep: deps.sleep,
          mailer: m,
          retryBackoffMs: deps.mail?.reportBackoffMs,
        }),
      );
  }
  if (f.coaching)
    features.push(
      coachingFeature(bot, f.coaching, {
        store: deps.store,
        logger: deps.logger,
        now: deps.now,
        sleep: deps.sleep,
        channel: deps.channel,
        llm: deps.llm,
        fence: deps.fence,
      }),
    );
  return features;
}
