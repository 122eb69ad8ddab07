import { type ProactiveDeps, type ProactiveMessage, recordThroughOutage, sendProactive, type WrittenText } from "../../core/proactive.js";
import { ChannelError, describeError } from "../../errors.js";
import { durationMs } from "../../lib/duration.js";
import { loadPrompt, renderPrompt } from "../../llm/prompt.js";
import { formatCredits } from "../../storage/balance.js";
import type { CoachingUser } from "../../storage/coaching.js";
import type { CoachingContext } from "./context.js";
import { modelFacts, weekText } from "./facts.js";
import { pauseRanges } from "./goals.js";
import { addDays, type Day, dueInstant, parseClock, weekStart, zonedInstant } from "./rules.js";

// The reminder schedule (docs/coaching.md, "Reminders and weekly summaries"): each pass sends every
// user the reminder of their local day and the summary of their week once due, each claimed first
// by a delivery row (`coaching_deliveries`), so no restart or second process sends it twice.

/** What one scheduler pass did. */
export interface TickResult {
  reminders: number;
  weekly: number;
  failed: number;
}

/** A proactive message's template `text`, and with `write` the model's text that goes out instead when it comes (core/proactive.ts). */
export type ProactiveText = Pick<ProactiveMessage, "text" | "write">;

/** The scheduler of one coaching feature instance. */
export interface Scheduler {
  /** One pass at the clock's now: sends due reminders and weekly summaries once each; stops early when `c.signal` aborts. */
  tick(): Promise<TickResult>;
  /**
   * Passes every `reminders.interval_s` (waited with `sleep`) until `c.signal` aborts; a failed
   * pass is logged and the next one runs.
   */
  run(sleep: (ms: number, signal: AbortSignal) => Promise<void>): Promise<void>;
}

/** The scheduler of `c`; without `c.deps.channel` a pass sends nothing. */
export function scheduler(c: CoachingContext): Scheduler {
  const { bot, cfg, deps, repo, log, t } = c;
  const catchUpMs = durationMs(cfg.reminders.catch_up)!;
  const weeklyAt = parseClock(cfg.weekly.at)!;

  const deliver = async (
    u: CoachingUser,
    kind: "reminder" | "weekly",
    day: Day,
    message: () => Promise<ProactiveText>,
  ): Promise<"sent" | "failed" | "skipped"> => {
    const claim = await repo.claimDelivery(bot.name, u.user_id, kind, day);
    if (claim === null) return "skipped";
    try {
      const { messageId, cost, written } = await sendProactive(proactiveDeps(c), { chatId: u.chat_id, threadKey: u.thread_key, kind, ...(await message()) });
      // Sent: record it through a database outage (a claim left `claimed` is never sent again).
      await recordThroughOutage(log, () => repo.finishDelivery(claim, "sent", messageId));
      log.info({ user_id: u.user_id, kind, day, cost_credits: formatCredits(cost), written }, "proactive message sent");
      return "sent";
    } catch (error) {
      const blocked = error instanceof ChannelError && error.status === 403;
      if (blocked) await repo.updateUser(bot.name, u.user_id, { status: "blocked" });
      await repo.finishDelivery(claim, "failed", null, describeError(error).slice(0, 2000));
      log.warn(
        { err: error, user_id: u.user_id, kind, day, blocked },
        blocked ? "user blocked the bot; no more proactive messages" : "proactive message failed",
      );
      return "failed";
    }
  };

  const tick = async (): Promise<TickResult> => {
    const res: TickResult = { reminders: 0, weekly: 0, failed: 0 };
    if (!deps.channel) return res;
    const now = deps.now();
    for (const u of await repo.reminderCandidates(bot.name)) {
      // Stopping: leave the rest to the next pass (of this or another process).
      if (c.signal.aborted) break;
      try {
        const day = c.today(u);
        const pauses = pauseRanges(await repo.pauses(bot.name, u.user_id));
        if (pauses.some((p) => day >= p.from && (p.until === null || day <= p.until))) continue;
        if (u.remind_at !== null) {
          const due = dueInstant(now, u.timezone, u.remind_at, u.day_starts_at);
          if (now >= due.dueMs && now - due.dueMs <= catchUpMs && !(await repo.hasCheckin(bot.name, u.user_id, due.day))) {
            const goals = (await repo.goals(bot.name, u.user_id)).filter((g) => g.status === "active");
            if (goals.length) {
              const r = await deliver(u, "reminder", due.day, async () => {
                const text = t("reminder", { name: u.name ?? "", goals: goals.map((g) => g.title).join(", ") });
                if (cfg.reminders.style === "template" || !deps.llm) return { text };
                return {
                  text,
                  write: (signal) =>
                    askModel(c, u, t("reminder_request", { goals: goals.map((g) => g.title).join(", ") }), signal).then((w) =>
                      w.text.trim() && w.text.length <= 1500 ? w : null,
                    ),
                };
              });
              if (r === "sent") res.reminders++;
              if (r === "failed") res.failed++;
              if (r === "failed") continue;
            }
          }
        }
        if (cfg.weekly.enabled) {
          const monday = weekStart(day);
          const dueMs = zonedInstant(addDays(monday, cfg.weekly.weekday - 1), weeklyAt, u.timezone);
          if (now >= dueMs && now - dueMs <= catchUpMs) {
            const r = await deliver(u, "weekly", monday, () => weekMessage(c, u, monday));
            if (r === "sent") res.weekly++;
            if (r === "failed") res.failed++;
          }
        }
      } catch (error) {
        log.error({ err: error, user_id: u.user_id }, "scheduler pass failed for a user");
      }
    }
    return res;
  };

  return {
    tick,
    async run(sleep) {
      while (!c.signal.aborted) {
        await tick().catch((e) => log.error({ err: e }, "coaching scheduler pass failed"));
        await sleep(cfg.reminders.interval_s * 1000, c.signal);
      }
    },
  };
}

/** What core/proactive.ts `sendProactive` needs, for this bot. Only called with `c.deps.channel` set. */
export function proactiveDeps(c: CoachingContext): ProactiveDeps {
  const { bot, deps } = c;
  return { bot, store: deps.store, channel: deps.channel!, now: deps.now, logger: c.log, signal: c.signal, fence: deps.fence };
}

/** The weekly summary: the numbers as the template prints them, with the model's words above when `weekly.style: model`. */
export async function weekMessage(c: CoachingContext, u: CoachingUser, monday: Day): Promise<ProactiveText> {
  const numbers = await weekText(c, u, monday);
  if (c.cfg.weekly.style === "template" || !c.deps.llm) return { text: numbers };
  return {
    text: numbers,
    write: async (signal) => {
      const w = await askModel(c, u, c.t("week_request", { summary: numbers }), signal);
      const words = w.text.trim();
      // The numbers are the code's: words with digits of their own (a recount, a date) are refused.
      if (!words || /\p{Nd}/u.test(words) || words.length > 1500) return null;
      return { ...w, text: `${words}\n\n${numbers}` };
    },
  };
}

/**
 * Asks the model for a text about this user: the bot's prompt with the user's numbers
 * (`{{coaching}}`), and the request as the user's turn. Only called with `c.deps.llm` set.
 * @throws LlmError when the model fails
 */
async function askModel(c: CoachingContext, u: CoachingUser, request: string, signal: AbortSignal | undefined): Promise<WrittenText> {
  const { bot, deps } = c;
  const facts = await modelFacts(c, u);
  const template = loadPrompt(bot, "messages");
  let system = renderPrompt(template, { botName: bot.name, timezone: u.timezone, nowMs: deps.now(), extra: { coaching: facts } });
  if (!/\{\{\s*coaching\s*\}\}/.test(template)) system += `\n\n${facts}`;
  return deps.llm!.complete(
    [
      { role: "system", content: system },
      { role: "user", content: request },
    ],
    { signal },
  );
}
