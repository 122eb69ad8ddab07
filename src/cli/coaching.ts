import { UsageError } from "../errors.js";
import { coachingStats, STREAK_BUCKETS } from "../features/coaching/stats.js";
import { formatCredits } from "../storage/balance.js";
import type { CliContext } from "./context.js";
import { loadBotsWarn } from "./configs.js";
import { withStore } from "./shared.js";

/**
 * `bots coaching stats BOT [--json]`: users (active in 7 days, in onboarding, stopped,
 * blocked), check-ins in 7 days, the streak distribution, reminders and weekly summaries sent
 * and failed, and the model cost per active user.
 * @throws UsageError (exit 2) for an unknown bot or one without features.coaching
 */
export async function coachingStatsCommand(c: CliContext, botName: string, deps: { now?: () => number } = {}): Promise<void> {
  const bot = loadBotsWarn(c, [botName]).find((b) => b.name === botName);
  if (!bot) throw new UsageError("UNKNOWN_BOT", `no bot named '${botName}'`, { hint: "bots status lists them" });
  if (!bot.features.coaching) throw new UsageError("NOT_COACHING", `bot ${botName} has no features.coaching`, { hint: "see docs/coaching.md" });
  const s = await withStore(c, (store) => coachingStats(store, bot.name, (deps.now ?? Date.now)()));
  if (c.json) {
    c.out(JSON.stringify(s));
    return;
  }
  c.out(`${s.bot} (last 7 days, since ${s.since.slice(0, 16).replace("T", " ")} UTC)`);
  c.out(
    `users: ${s.users.total} — active in 7 days ${s.users.active_7d}, in onboarding ${s.users.onboarding}, stopped ${s.users.stopped}, blocked ${s.users.blocked}`,
  );
  c.out(`check-ins: ${s.checkins_7d}`);
  c.out(`streaks: ${STREAK_BUCKETS.map((b) => `${b}: ${s.streaks[b]}`).join(", ")}`);
  c.out(`reminders: ${s.reminders.sent} sent, ${s.reminders.failed} failed; weekly summaries: ${s.weekly.sent} sent, ${s.weekly.failed} failed`);
  c.out(`model cost: ${formatCredits(s.cost)} credits, ${s.cost_per_active_user === null ? "—" : formatCredits(s.cost_per_active_user)} per active user`);
}
