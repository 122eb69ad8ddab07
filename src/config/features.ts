import { Cron } from "croner";
import * as z from "zod";
import { TEXT_KEYS, type TextKey } from "../features/coaching/texts.js";

/**
 * zod schemas of the optional per-bot features (`features:` in a bot YAML). Each
 * feature owns its schema; this file only gathers them so the config loader stays light.
 */
/**
 * `features.deadline` (docs/vk.md): comments on a post whose text names a deadline
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

/** An e-mail address (syntax only), or a list of them. */
const emailList = z
  .union([z.string(), z.array(z.string())])
  .transform((v) => (Array.isArray(v) ? v : [v]))
  .pipe(z.array(z.string().regex(/^[^\s@<>",;]+@[^\s@<>",;]+\.[^\s@<>",;]+$/, "not an e-mail address")));

/** Lead fields the `save_lead` tool takes. */
export const LEAD_FIELDS = ["name", "phone", "email", "note"] as const;
/** One of {@link LEAD_FIELDS}. */
export type LeadField = (typeof LEAD_FIELDS)[number];

/**
 * `features.leads` (docs/sales.md): the `save_lead` tool and the operator e-mail. Needs the bot's
 * top-level `smtp:` section when `notify_to` is set.
 */
export const leadsSchema = z.strictObject({
  /** Fields the model must give; a call without them goes back to the model. @defaultValue ["name", "phone"] */
  required: z.array(z.enum(LEAD_FIELDS)).default(["name", "phone"]),
  /** Operator address(es) e-mailed for every new or changed lead. @defaultValue [] (store only) */
  notify_to: emailList.default([]),
  /** What the tool is for, as the model reads it. */
  tool_description: z
    .string()
    .min(1)
    .default(
      "Save the customer's contact details as a lead once they have given them (name, phone, e-mail, what they want). Call again if they correct something.",
    ),
  /** Telegram only: offer the `request_contact` tool, which shows a "share my phone" button. @defaultValue true */
  contact_button: z.boolean().default(true),
  /** Label of that button. @defaultValue "📱 Отправить телефон" */
  contact_button_text: z.string().min(1).max(64).default("📱 Отправить телефон"),
  /** How often unsent lead e-mails are retried, seconds. @defaultValue 60 */
  retry_interval_s: z.number().int().min(1).max(86_400).default(60),
});

/** A cron expression croner accepts (5 or 6 fields, or a nickname such as `@daily`). */
const cronPattern = z.string().refine(
  (p) => {
    try {
      new Cron(p, { paused: true });
      return true;
    } catch {
      return false;
    }
  },
  { message: "not a cron expression (e.g. '0 9 * * *' = every day at 09:00)" },
);

/** A duration such as `24h`, `30m`, `7d`, `90s`. */
export const durationString = z.string().regex(/^\d+(\.\d+)?\s*(s|m|h|d|w)$/, "a duration like 24h, 30m, 7d");

/** `features.report` (docs/sales.md): the HTML dialog report, e-mailed on a cron schedule. */
export const reportSchema = z.strictObject({
  /** Recipient address(es). */
  to: emailList.refine((v) => v.length > 0, { message: "at least one address" }),
  /** When to send, in the bot's `timezone` (croner syntax). @defaultValue "0 9 * * *" */
  cron: cronPattern.default("0 9 * * *"),
  /** The period the report covers, ending when it is sent. @defaultValue "24h" */
  period: durationString.default("24h"),
  /** Mail subject; `{bot}`, `{from}`, `{to}` are filled in. @defaultValue "Диалоги {bot}: {from} — {to}" */
  subject: z.string().min(1).default("Диалоги {bot}: {from} — {to}"),
});

/** `HH:MM`, 24 h. */
const clockTime = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, "a time like 04:00 or 20:30");

/**
 * `features.coaching` (docs/coaching.md): onboarding, goals, check-ins, streaks,
 * points and levels, reminders in each user's time zone, weekly summaries.
 */
export const coachingSchema = z.strictObject({
  /** Language of the built-in texts. @defaultValue "ru" */
  language: z.enum(["ru", "en"]).default("ru"),
  /** Local time at which a user's day starts: a check-in before it counts for the day before. @defaultValue "04:00" */
  day_starts_at: clockTime.default("04:00"),
  /** At most this many active goals per user. @defaultValue 3 */
  max_goals: z.number().int().min(1).max(10).default(3),
  reminders: z
    .strictObject({
      /** A reminder missed by downtime is still sent this long after its time, then skipped. @defaultValue "4h" */
      catch_up: durationString.default("4h"),
      /** How often the scheduler looks for due reminders, seconds. @defaultValue 60 */
      interval_s: z.number().int().min(5).max(3600).default(60),
      /**
       * `template`: the `reminder` text, free. `model`: the model writes each reminder from the
       * user's numbers, charged like a reply; the template goes out (free) when the balance
       * cannot pay or the model fails. @defaultValue "template"
       */
      style: z.enum(["template", "model"]).default("template"),
    })
    .default({ catch_up: "4h", interval_s: 60, style: "template" }),
  weekly: z
    .strictObject({
      /** ISO weekday of the summary, 1 = Monday … 7 = Sunday. @defaultValue 7 */
      weekday: z.number().int().min(1).max(7).default(7),
      /** Local time of the summary. @defaultValue "19:00" */
      at: clockTime.default("19:00"),
      /** Set false to send no weekly summaries (`/week` still works). @defaultValue true */
      enabled: z.boolean().default(true),
      /**
       * `model`: the model writes a few words above the numbers (which the code computes and
       * always prints itself), charged like a reply; the template alone goes out (free) when the
       * balance cannot pay, the model fails or writes numbers of its own. `template`: numbers
       * only, free. Applies to the scheduled summary and `/week`. @defaultValue "model"
       */
      style: z.enum(["template", "model"]).default("model"),
    })
    .default({ weekday: 7, at: "19:00", enabled: true, style: "model" }),
  /**
   * At onboarding the model suggests clearer wordings of the user's goals (with a frequency),
   * charged like a reply; the user takes them or keeps their own. @defaultValue true
   */
  phrase_goals: z.boolean().default(true),
  /** Replacements of built-in texts by key (see docs/coaching.md). @defaultValue {} */
  texts: z.partialRecord(z.enum(TEXT_KEYS as [TextKey, ...TextKey[]]), z.string().min(1)).default({}),
});

/** `features.coaching` after parsing. */
export type CoachingConfig = z.infer<typeof coachingSchema>;

export const featuresSchema = z
  .strictObject({
    deadline: deadlineSchema.optional(),
    leads: leadsSchema.optional(),
    report: reportSchema.optional(),
    coaching: coachingSchema.optional(),
  })
  .default({});

export type FeaturesConfig = z.infer<typeof featuresSchema>;
/** `features.leads` after parsing. */
export type LeadsConfig = z.infer<typeof leadsSchema>;
/** `features.report` after parsing. */
export type ReportConfig = z.infer<typeof reportSchema>;
