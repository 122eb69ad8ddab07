import type { CheckinRow, GoalRow, PauseRow } from "../../storage/coaching.js";
import { addDays, dailyStreak, weekStart, weeklyStreak, type Day, type PauseRange, type Streak } from "./rules.js";

/** A goal as the user writes it: "бегать 3 раза в неделю" → weekly, 3. */
export interface ParsedGoal {
  title: string;
  kind: "daily" | "weekly";
  /** Days per week (7 for daily). */
  target: number;
}

/** Words that mark an answer as an instruction to the bot rather than a goal or a name. */
const INJECTION =
  /(ignore|disregard|forget)\s+(all|any|previous|the|your)|игнорир|забудь|system\s*prompt|системн\w*\s+(промпт|сообщ|инструкц)|инструкци|developer\s+mode|jailbreak|you\s+are\s+now|ты\s+теперь|<\/?[a-z]+>|```/i;

/** True when the text reads like a prompt-injection attempt. */
export function looksLikeInjection(text: string): boolean {
  return INJECTION.test(text);
}

/**
 * Parses one goal line. "N раз(а) в неделю", "N times a week", "Nx/week" make a weekly goal
 * (7 makes it daily); anything else is daily.
 * @returns the goal, or null when the line is empty, too long (over 120 characters) or an instruction
 */
export function parseGoal(line: string): ParsedGoal | null {
  const title = line
    .trim()
    .replace(/^[-•*\d.)\s]+/, "")
    .trim();
  if (title.length < 2 || title.length > 120 || looksLikeInjection(title) || title.startsWith("/")) return null;
  const m = /(\d)\s*(?:раз[а]?|times?|x|×)\s*(?:в|a|per|\/)\s*(?:неделю|нед\.?|week|wk)/i.exec(title);
  if (m) {
    const n = Number(m[1]);
    if (n < 1 || n > 7) return null;
    return n === 7 ? { title, kind: "daily", target: 7 } : { title, kind: "weekly", target: n };
  }
  return { title, kind: "daily", target: 7 };
}

/** Pauses as rule ranges. */
export function pauseRanges(rows: PauseRow[]): PauseRange[] {
  return rows.map((p) => ({ from: p.from_day, until: p.until_day }));
}

/** A goal with its numbers, computed from the log. */
export interface GoalFacts {
  goal: GoalRow;
  streak: Streak;
  /** Distinct check-in days this (local) week. */
  weekDays: number;
  doneToday: boolean;
}

/** The numbers of each goal for `today`: streak, this week's days, done today. */
export function goalFacts(goals: GoalRow[], checkins: CheckinRow[], pauses: PauseRange[], today: Day): GoalFacts[] {
  const monday = weekStart(today);
  return goals.map((goal) => {
    const days = checkins.filter((c) => c.goal_id === goal.id).map((c) => c.day);
    const streak = goal.kind === "daily" ? dailyStreak(days, today, pauses) : weeklyStreak(days, today, goal.target, pauses);
    return { goal, streak, weekDays: new Set(days.filter((d) => d >= monday && d <= today)).size, doneToday: days.includes(today) };
  });
}

/** Figures of one week for the summary. */
export interface WeekFigures {
  from: Day;
  to: Day;
  checkins: number;
  points: number;
  /** Per goal: distinct days done, or null when nothing was recorded for it that week. */
  goals: Array<{ goal: GoalRow; days: number | null; streak: Streak }>;
  /** The day with the most check-ins (earliest on a tie), null without any. */
  bestDay: Day | null;
}

/** The figures of the week starting on `monday` (Monday-first, local), computed from the log. */
export function weekFigures(goals: GoalRow[], checkins: CheckinRow[], pauses: PauseRange[], monday: Day): WeekFigures {
  const to = addDays(monday, 6);
  const inWeek = checkins.filter((c) => c.day >= monday && c.day <= to);
  const perDay = new Map<string, number>();
  for (const c of inWeek) perDay.set(c.day, (perDay.get(c.day) ?? 0) + 1);
  let bestDay: Day | null = null;
  for (const [d, n] of [...perDay].sort(([a], [b]) => a.localeCompare(b))) if (bestDay === null || n > perDay.get(bestDay)!) bestDay = d;
  return {
    from: monday,
    to,
    checkins: inWeek.length,
    points: inWeek.reduce((s, c) => s + c.points, 0),
    goals: goals.map((goal) => {
      const mine = inWeek.filter((c) => c.goal_id === goal.id);
      const all = checkins.filter((c) => c.goal_id === goal.id && c.day <= to).map((c) => c.day);
      const streak = goal.kind === "daily" ? dailyStreak(all, to, pauses) : weeklyStreak(all, to, goal.target, pauses);
      return { goal, days: mine.length ? new Set(mine.map((c) => c.day)).size : null, streak };
    }),
    bestDay,
  };
}
