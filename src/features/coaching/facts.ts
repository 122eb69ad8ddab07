import type { CheckinRow, CoachingUser, GoalRow } from "../../storage/coaching.js";
import type { ToolEffectKey } from "../../storage/tool-effects.js";
import type { CoachingContext } from "./context.js";
import { type GoalFacts, goalFacts, pauseRanges, weekFigures } from "./goals.js";
import { addDays, checkinPoints, type Day, levelFor, type PauseRange } from "./rules.js";

// What the prompt, the tool and the commands read about a user's goals: computed here from the
// log in the database, never by the model (docs/coaching.md, "The model gets numbers").

/** A user's goals and log as of their check-in day now. */
export interface UserFacts {
  /** The user's check-in day now. */
  day: Day;
  /** The user's goals, oldest first, archived ones left out (as `repo.goals` gives them). */
  goals: GoalRow[];
  /** The goals not archived (paused ones included), in the order their numbers (1, 2, 3) follow. */
  active: GoalRow[];
  checkins: CheckinRow[];
  pauses: PauseRange[];
  /** The user's points, all check-ins counted. */
  points: number;
  /** The numbers of each goal in `active`, same order. */
  facts: GoalFacts[];
}

/** Reads a user's goals, check-ins, pauses and points, and computes each goal's numbers for today. */
export async function factsOf(c: CoachingContext, u: CoachingUser): Promise<UserFacts> {
  const day = c.today(u);
  const [goals, checkins, pauses, points] = await Promise.all([
    c.repo.goals(c.bot.name, u.user_id),
    c.repo.checkins(c.bot.name, u.user_id),
    c.repo.pauses(c.bot.name, u.user_id),
    c.repo.points(c.bot.name, u.user_id),
  ]);
  // Goals are numbered among those not archived (paused ones keep their number), everywhere.
  const active = goals.filter((g) => g.status !== "archived");
  return { day, goals, active, checkins, pauses: pauseRanges(pauses), points, facts: goalFacts(active, checkins, pauseRanges(pauses), day) };
}

/** How often, as the user reads it: "каждый день" / "daily", "3 р/нед" / "3×/week". */
export function goalKind(c: CoachingContext, g: Pick<GoalRow, "kind" | "target">): string {
  return g.kind === "daily" ? (c.en ? "daily" : "каждый день") : c.en ? `${g.target}×/week` : `${g.target} р/нед`;
}

/** A goal's current streak with its unit: days for a daily goal, weeks for a weekly one. */
export function streakText(c: CoachingContext, f: GoalFacts): string {
  return f.goal.kind === "daily" ? (c.en ? `${f.streak.current} d` : `${f.streak.current} дн.`) : c.en ? `${f.streak.current} wk` : `${f.streak.current} нед.`;
}

/** The numbers the model gets; it never computes them. */
export async function modelFacts(c: CoachingContext, u: CoachingUser): Promise<string> {
  const f = await factsOf(c, u);
  const lvl = levelFor(f.points);
  const lines = f.facts.map(
    (x, i) =>
      `${i + 1}. "${x.goal.title}" (${x.goal.kind === "daily" ? "daily" : `${x.goal.target} days a week`}${x.goal.status === "paused" ? ", paused" : ""}): streak ${x.streak.current} ${x.goal.kind === "daily" ? "days" : "weeks"} (best ${x.streak.best}), freezes held ${x.streak.freezes}, days this week ${x.weekDays}, done today: ${x.doneToday ? "yes" : "no"}`,
  );
  return [
    `Coaching facts (computed by the bot; use them as given, do not recompute):`,
    `User: ${u.name ?? "?"}; time zone ${u.timezone}; today is ${f.day}.`,
    `Points ${f.points}, level ${lvl.level} (next level at ${lvl.next}).`,
    lines.length ? `Goals:\n${lines.join("\n")}` : "No active goals.",
    u.profile ? `Profile: ${u.profile}` : "",
    `To record progress the user reports, call log_progress.`,
  ]
    .filter(Boolean)
    .join("\n");
}

/** What a check-in did: the row written (or found, `repeated`), the user's new total, level and the goal's streak text. */
export interface CheckInResult {
  row: CheckinRow & { repeated: boolean };
  total: number;
  level: number;
  streak: string;
}

/**
 * Records that `u` did `goal` on `day` (points by rules.ts `checkinPoints`), then reads the
 * numbers back. With `effect`, one check-in per that key however often it is asked (storage/tool-effects.ts).
 */
export async function checkIn(
  c: CoachingContext,
  u: CoachingUser,
  goal: GoalRow,
  day: Day,
  source: string,
  note?: string | null,
  effect?: ToolEffectKey,
): Promise<CheckInResult> {
  const row = await c.repo.addCheckin({ bot: c.bot.name, user_id: u.user_id, goal_id: goal.id, day, source, note, pointsFor: checkinPoints, effect });
  const f = await factsOf(c, u);
  const gf = goalFacts([goal], f.checkins, f.pauses, f.day)[0]!;
  return { row, total: f.points, level: levelFor(f.points).level, streak: streakText(c, gf) };
}

/**
 * The day a `/done` argument names: today, `yesterday`/`вчера`, or a date within the last 7 days
 * (`YYYY-MM-DD` or `DD.MM`); null when `word` names no day, `"range"` when the day is outside them.
 */
export function backfillDay(c: CoachingContext, u: CoachingUser, word: string | undefined): Day | null | "range" {
  const d = c.today(u);
  if (!word) return d;
  if (/^(yesterday|вчера)$/i.test(word)) return addDays(d, -1);
  let m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(word);
  let day: Day | null = m ? word : null;
  m = /^(\d{1,2})\.(\d{1,2})$/.exec(word);
  if (m) {
    const cand = `${d.slice(0, 4)}-${m[2]!.padStart(2, "0")}-${m[1]!.padStart(2, "0")}`;
    day = cand > d ? `${Number(d.slice(0, 4)) - 1}${cand.slice(4)}` : cand;
  }
  if (!day) return null;
  return day <= d && day >= addDays(d, -7) ? day : "range";
}

/** The goal `arg` names among `active`: by number (1-based), by words of its title, or the only one when `arg` is empty. */
export function goalByNumber(active: GoalRow[], arg: string | undefined): GoalRow | undefined {
  if (arg && /^\d+$/.test(arg)) return active[Number(arg) - 1];
  if (!arg && active.length === 1) return active[0];
  if (arg) return findGoal(active, arg);
  return undefined;
}

/** The goal whose title shares the most words (4+ letters, any case) with `text`. */
function findGoal(goals: GoalRow[], text: string): GoalRow | undefined {
  const words = (s: string) =>
    new Set(
      s
        .toLowerCase()
        .split(/[^\p{L}\p{N}]+/u)
        .filter((w) => w.length >= 4)
        .map((w) => w.slice(0, 5)),
    );
  const want = words(text);
  let best: GoalRow | undefined;
  let score = 0;
  for (const g of goals) {
    const n = [...words(g.title)].filter((w) => want.has(w)).length;
    if (n > score) [best, score] = [g, n];
  }
  return best;
}

/** The numbers of the week starting on `monday` (local), as the `week_summary` text prints them. */
export async function weekText(c: CoachingContext, u: CoachingUser, monday: Day): Promise<string> {
  const f = await factsOf(c, u);
  const w = weekFigures(f.active, f.checkins, f.pauses, monday);
  const goals = w.goals.map((g) => `${g.goal.title}: ${g.days === null ? c.t("not_recorded") : `${g.days}/${g.goal.target}`}`).join("\n");
  return c.t("week_summary", { from: w.from, to: w.to, checkins: w.checkins, points: w.points, goals, best_day: w.bestDay ?? c.t("not_recorded") });
}
