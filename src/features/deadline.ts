import * as chrono from "chrono-node";
import type { BotConfig } from "../config/schema.js";
import type { Feature } from "../core/pipeline.js";
import type { DeadlineConfig } from "../config/features.js";
import type { FeatureDeps } from "./index.js";
import { offsetMs, wallParts, zonedTimeToUtc } from "../lib/zoned.js";

/**
 * Words that, right before a date, make it a deadline: "до 25 ноября", "по 30.11", "не позднее
 * 1 декабря", "until December 1", "by Nov 30", "deadline: Nov 30", "срок: 30.11".
 */
const MARKER = /(?:^|[^\p{L}])(?:до|по|не позднее|срок(?: подачи)?:?|дедлайн:?|until|till|by|before|no later than|deadline:?|due)\s*$/iu;

/** How far before a date a marker may stand, characters. */
const MARKER_WINDOW = 40;

/** Options of {@link findDeadline}. */
export interface FindDeadlineOptions {
  /** When the post was published, epoch ms UTC: dates without a year are the next ones after it. */
  referenceMs: number;
  /** IANA time zone the post's dates and times are meant in (the bot's `timezone`). */
  timezone: string;
}

/**
 * Finds the deadline in a post's text, in Russian or English, with chrono-node: a date preceded
 * by a marker word (до, по, не позднее, срок, until, till, by, before, deadline, due). "DD.MM"
 * without a year is read as the next such day after the post. A date without a time means the
 * end of that day (23:59:59.999) in `timezone`. When several marked dates appear, the latest
 * wins (so a comment is never refused too early). Dates without a marker ("итоги 1 декабря")
 * are not deadlines.
 * @returns the deadline, epoch ms UTC, or null when the text names none
 */
export function findDeadline(text: string, options: FindDeadlineOptions): number | null {
  const { referenceMs, timezone } = options;
  const prepared = isoNumericDates(text, referenceMs, timezone);
  const reference = { instant: new Date(referenceMs), timezone: offsetMs(referenceMs, timezone) / 60_000 };
  let best: number | null = null;
  for (const parser of [chrono.ru, chrono.en]) {
    for (const r of parser.parse(prepared, reference, { forwardDate: true })) {
      const before = prepared.slice(Math.max(0, r.index - MARKER_WINDOW), r.index);
      if (!MARKER.test(before)) continue;
      const s = r.start;
      if (!s.isCertain("day") || !s.isCertain("month")) continue;
      const [y, mo, d] = [s.get("year")!, s.get("month")!, s.get("day")!];
      const at = s.isCertain("hour")
        ? zonedTimeToUtc(y, mo, d, s.get("hour")!, s.get("minute") ?? 0, 0, 0, timezone)
        : zonedTimeToUtc(y, mo, d, 23, 59, 59, 999, timezone);
      if (best === null || at > best) best = at;
    }
  }
  return best;
}

/**
 * Numeric dates are Russian-style day-first ("30.11", "30.11.2026"), which chrono's English
 * parser would read month-first and its Russian one does not read without a year: rewrite them
 * as ISO dates, a year-less one in the year of its next occurrence after the reference.
 */
function isoNumericDates(text: string, referenceMs: number, timezone: string): string {
  const refYear = wallParts(referenceMs, timezone).year;
  return text.replace(/(?<![\d.])(\d{1,2})\.(\d{1,2})(?:\.(\d{4}))?(?![.\d])/g, (m, dd: string, mm: string, yyyy?: string) => {
    const day = Number(dd);
    const month = Number(mm);
    if (day < 1 || day > 31 || month < 1 || month > 12) return m;
    const year = yyyy ? Number(yyyy) : zonedTimeToUtc(refYear, month, day, 23, 59, 59, 999, timezone) < referenceMs ? refYear + 1 : refYear;
    return `${year}-${String(month).padStart(2, "0")}-${String(day).padStart(2, "0")}`;
  });
}

/**
 * The deadline feature (docs/vk.md): a gate for comments (`kind: comments`) that carry the post's
 * text in `vars.post_text` (and its date, ISO 8601, in `vars.post_date`). VK sets them for
 * `wall_reply_new`; Telegram for a comment in a channel's discussion group. When the post names
 * a deadline and the comment was received after it (plus `grace_minutes`), the model is not
 * asked: the message gets status `skipped` with the reason, nothing is charged, and
 * `expired_reply`, when set, is sent free of charge and stored as the answer.
 */
export function deadlineFeature(bot: BotConfig, config: DeadlineConfig, deps: FeatureDeps): Feature {
  return {
    name: "deadline",
    gate: async (ctx, next) => {
      const postText = ctx.msg.vars?.post_text;
      if (ctx.msg.kind !== "comments" || !postText) return next();
      const posted = ctx.msg.vars?.post_date ? Date.parse(ctx.msg.vars.post_date) : Number.NaN;
      const deadline = findDeadline(postText, { referenceMs: Number.isNaN(posted) ? ctx.msg.receivedMs : posted, timezone: bot.timezone });
      // The comment's own time decides, so a replay later still answers a comment made in time.
      if (deadline === null || ctx.msg.receivedMs <= deadline + config.grace_minutes * 60_000) return next();
      const reason = `post deadline ${new Date(deadline).toISOString()} had passed`;
      ctx.outcome = "skipped";
      await deps.store.messages.setStatus(ctx.id!, "skipped", { error: reason, from: ["received", "failed", "no_balance"], fence: ctx.fence });
      ctx.log.info(
        { deadline: new Date(deadline).toISOString(), expired_reply: config.expired_reply !== null },
        "comment after the post's deadline; not answered by the model",
      );
      if (config.expired_reply) await ctx.sendFreeReply?.(config.expired_reply);
    },
  };
}
