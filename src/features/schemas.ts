import { z } from "zod";

/**
 * zod schemas of the optional per-bot features (`features:` in a bot YAML, SPEC §7). Each
 * feature owns its schema; this file only gathers them so the config loader stays light.
 * Placeholders accept a mapping until the feature lands.
 */
const pending = z.record(z.string(), z.unknown());

export const featuresSchema = z
  .strictObject({
    deadline: pending.optional(),
    leads: pending.optional(),
    report: pending.optional(),
    coaching: pending.optional(),
  })
  .default({});

export type FeaturesConfig = z.infer<typeof featuresSchema>;
