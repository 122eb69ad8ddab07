import type { Logger } from "pino";
import type { BotConfig } from "../config/schema.js";
import type { Feature } from "../core/pipeline.js";
import type { Store } from "../storage/index.js";
import { deadlineFeature } from "./deadline.js";

/** What features may use: the same injected dependencies as the pipeline. */
export interface FeatureDeps {
  store: Store;
  logger: Logger;
  /** Clock, epoch ms UTC. */
  now: () => number;
  /** Environment (SMTP settings and the like). */
  env?: Record<string, string>;
}

/**
 * Builds the features a bot's config enables, in pipeline order. Each feature is a gate
 * (stage 4), tools for the model, and/or background work started with the bot.
 */
export function buildFeatures(bot: BotConfig, deps: FeatureDeps): Feature[] {
  const features: Feature[] = [];
  if (bot.features.deadline) features.push(deadlineFeature(bot, bot.features.deadline, deps));
  return features;
}
