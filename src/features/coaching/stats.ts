import type { Store } from "../../storage/index.js";
import { goalFacts, pauseRanges } from "./goals.js";
import { checkinDay } from "./rules.js";

/** Streak buckets of `bots coaching stats`, in days or weeks in a row. */
export const STREAK_BUCKETS = ["0", "1-2", "3-6", "7-13", "14-29", "30+"] as const;

/** What `bots coaching stats BOT` shows (docs/coaching.md, "`bots coaching stats BOT [--json]`"): the last 7 days unless said otherwise. */
export interface CoachingStats {
  bot: string;
  /** Start of the period, ISO 8601 UTC. */
  since: string;
  users: { total: number; active_7d: number; onboarding: number; active: number; stopped: number; blocked: number };
  checkins_7d: number;
  /** Current streaks of active goals of active users, by bucket. */
  streaks: Record<(typeof STREAK_BUCKETS)[number], number>;
  reminders: { sent: number; failed: number; claimed: number };
  weekly: { sent: number; failed: number; claimed: number };
  /** Credits (hundredths) spent by the bot in the period, and per user active in it. */
  cost: number;
  cost_per_active_user: number | null;
}

function bucket(n: number): (typeof STREAK_BUCKETS)[number] {
  return n === 0 ? "0" : n <= 2 ? "1-2" : n <= 6 ? "3-6" : n <= 13 ? "7-13" : n <= 29 ? "14-29" : "30+";
}

/**
 * Computes the figures of `bots coaching stats` for one bot at `nowMs` (epoch ms UTC): users by
 * status, users with a check-in in the last 7 days, check-ins, the current streak of every
 * active goal of active users (computed from the log, like everywhere else), reminders and
 * weekly summaries by delivery status, and the bot's model cost per active user.
 */
export async function coachingStats(store: Store, bot: string, nowMs: number): Promise<CoachingStats> {
  const sinceMs = nowMs - 7 * 86_400_000;
  const c = await store.coaching.counts(bot, sinceMs);
  const streaks = Object.fromEntries(STREAK_BUCKETS.map((b) => [b, 0])) as CoachingStats["streaks"];
  for (const u of await store.coaching.reminderCandidates(bot)) {
    const [goals, checkins, pauses] = await Promise.all([
      store.coaching.goals(bot, u.user_id),
      store.coaching.checkins(bot, u.user_id),
      store.coaching.pauses(bot, u.user_id),
    ]);
    const today = checkinDay(nowMs, u.timezone, u.day_starts_at);
    for (const f of goalFacts(
      goals.filter((g) => g.status === "active"),
      checkins,
      pauseRanges(pauses),
      today,
    ))
      streaks[bucket(f.streak.current)]++;
  }
  const total = Object.values(c.users).reduce((a, b) => a + b, 0);
  const d = (r: Record<string, number>) => ({ sent: r.sent ?? 0, failed: r.failed ?? 0, claimed: r.claimed ?? 0 });
  return {
    bot,
    since: new Date(sinceMs).toISOString(),
    users: {
      total,
      active_7d: c.activeUsers,
      onboarding: c.users.onboarding ?? 0,
      active: c.users.active ?? 0,
      stopped: c.users.stopped ?? 0,
      blocked: c.users.blocked ?? 0,
    },
    checkins_7d: c.checkins,
    streaks,
    reminders: d(c.reminders),
    weekly: d(c.weekly),
    cost: c.cost,
    cost_per_active_user: c.activeUsers ? Math.round(c.cost / c.activeUsers) : null,
  };
}
