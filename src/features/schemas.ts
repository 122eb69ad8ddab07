import { z } from "zod";

/**
 * zod schemas of the optional per-bot features (`features:` in a bot YAML, SPEC §7). Each
 * feature owns its schema; this file only gathers them so the config loader stays light.
 * Placeholders accept a mapping until the feature lands.
 */
const pending = z.record(z.string(), z.unknown());

/**
 * `features.deadline` (SPEC §7, seeds 000/001): comments on a post whose text names a deadline
 * ("приём заявок до 25 ноября", "до 30.11 23:59", "until December 1") are not answered by the
 * model once it has passed. See src/features/deadline.ts.
 */
export const deadlineSchema = z.strictObject({
  /** Sent free of charge to a comment that came after the deadline; null sends nothing. @defaultValue null */
  expired_reply: z.string().min(1).nullable().default(null),
  /** Minutes after the deadline during which comments are still answered. @defaultValue 0 */
  grace_minutes: z.number().int().min(0).max(10_080).default(0),
});

/** Parsed `features.deadline`. */
export type DeadlineConfig = z.infer<typeof deadlineSchema>;

export const featuresSchema = z
  .strictObject({
    deadline: deadlineSchema.optional(),
    leads: pending.optional(),
    report: pending.optional(),
    coaching: pending.optional(),
  })
  .default({});

export type FeaturesConfig = z.infer<typeof featuresSchema>;
