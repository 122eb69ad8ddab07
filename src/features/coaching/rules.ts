/**
 * The rules of features.coaching in one place, as pure functions (docs/coaching.md "Rules"):
 * which local day a check-in belongs to, streaks computed from the check-in log, freezes,
 * points and levels. The model is given these numbers and never computes them.
 *
 * Days are local calendar days written `YYYY-MM-DD` (ISO 8601); zones are IANA names
 * (`Europe/Berlin`), never offsets. Times are epoch ms UTC.
 */

import { isoDay, wallParts } from "../../lib/zoned.js";

/** A local day, `YYYY-MM-DD`. */
export type Day = string;

/** Local wall-clock time of an instant in a zone. */
export interface WallTime {
  day: Day;
  /** Minutes since local midnight, 0-1439. */
  minutes: number;
}

/**
 * The wall-clock date and time of `ms` in `zone` (Intl, so the zone's DST rules apply).
 * @throws RangeError for an unknown zone
 */
export function wallTime(ms: number, zone: string): WallTime {
  const p = wallParts(ms, zone);
  return { day: isoDay(p), minutes: p.hour * 60 + p.minute };
}

/** True when `zone` is an IANA zone Intl knows. */
export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return /\//.test(zone) || zone === "UTC";
  } catch {
    return false;
  }
}

/**
 * Parses `HH:MM` (24 h) into minutes since midnight.
 * @returns the minutes, or null when it is not a time
 */
export function parseClock(text: string): number | null {
  const m = /^\s*([01]?\d|2[0-3])[:.]([0-5]\d)\s*$/.exec(text);
  return m ? Number(m[1]) * 60 + Number(m[2]) : null;
}

/** Formats minutes since midnight as `HH:MM`. */
export function formatClock(minutes: number): string {
  return `${String(Math.floor(minutes / 60)).padStart(2, "0")}:${String(minutes % 60).padStart(2, "0")}`;
}

/** Days since 1970-01-01 of a local day. */
export function dayNumber(day: Day): number {
  const [y, m, d] = day.split("-").map(Number) as [number, number, number];
  return Math.round(Date.UTC(y, m - 1, d) / 86_400_000);
}

/** The local day `n` days after `day` (negative goes back). */
export function addDays(day: Day, n: number): Day {
  return new Date((dayNumber(day) + n) * 86_400_000).toISOString().slice(0, 10);
}

/** ISO weekday of a day: 1 = Monday … 7 = Sunday. */
export function weekday(day: Day): number {
  return ((((dayNumber(day) + 3) % 7) + 7) % 7) + 1;
}

/** The Monday of the (local, Monday-first) week holding `day`. */
export function weekStart(day: Day): Day {
  return addDays(day, 1 - weekday(day));
}

/**
 * The day a check-in (or anything else the user does) at `ms` belongs to: the local date in
 * `zone`, except that before `dayStartsAt` (minutes after midnight, default 04:00) it is still
 * the day before. A check-in at 02:30 counts for yesterday.
 */
export function checkinDay(ms: number, zone: string, dayStartsAt = 240): Day {
  const w = wallTime(ms, zone);
  return w.minutes < dayStartsAt ? addDays(w.day, -1) : w.day;
}

/**
 * The instant a local wall-clock time happens in a zone (epoch ms UTC). A time skipped by a
 * spring-forward change (02:30 on 2026-03-29 in Berlin) maps to the same wall time in the
 * offset before the change, which is the moment right after the gap; a repeated time (autumn)
 * maps to its first occurrence.
 */
export function zonedInstant(day: Day, minutes: number, zone: string): number {
  const naive = dayNumber(day) * 86_400_000 + minutes * 60_000;
  const offsetAt = (t: number) => {
    const w = wallTime(t, zone);
    return dayNumber(w.day) * 86_400_000 + w.minutes * 60_000 - Math.floor(t / 60_000) * 60_000;
  };
  const before = offsetAt(naive - 86_400_000 / 2);
  const first = naive - before;
  const after = offsetAt(first);
  if (after === before) return first;
  const second = naive - after;
  // Two candidates around a change: take the one whose wall time is the one asked for, earliest.
  const ok = [first, second]
    .filter((t) => {
      const w = wallTime(t, zone);
      return w.day === day && w.minutes === minutes;
    })
    .sort((a, b) => a - b);
  return ok[0] ?? first;
}

/**
 * When a daily time (minutes after midnight) is due for the check-in day holding `nowMs`: the
 * instant of that wall time on the check-in day (on the next calendar date when the time comes
 * before `dayStartsAt`, e.g. a 01:00 reminder of a 04:00 day).
 */
export function dueInstant(nowMs: number, zone: string, atMinutes: number, dayStartsAt = 240): { day: Day; dueMs: number } {
  const day = checkinDay(nowMs, zone, dayStartsAt);
  const calendar = atMinutes < dayStartsAt ? addDays(day, 1) : day;
  return { day, dueMs: zonedInstant(calendar, atMinutes, zone) };
}

/** A paused stretch of days, both ends included (`/pause 7d`, vacation). */
export interface PauseRange {
  from: Day;
  /** Inclusive; null = until resumed. */
  until: Day | null;
}

/** True when `day` is inside one of the pauses. */
export function isPaused(day: Day, pauses: readonly PauseRange[]): boolean {
  return pauses.some((p) => day >= p.from && (p.until === null || day <= p.until));
}

/** At most this many freezes are held. */
export const MAX_FREEZES = 2;
/** A freeze is earned each time a daily streak reaches a multiple of this many days. */
export const FREEZE_EVERY = 7;

/** The streak of one goal, computed from its log. */
export interface Streak {
  /** Days (daily goal) or weeks (weekly goal) in a row up to today; today not yet done does not break it. */
  current: number;
  /** Longest ever. */
  best: number;
  /** Freezes held now (daily goals), 0-2. */
  freezes: number;
  /** Days a freeze covered, oldest first. */
  frozen: Day[];
}

/**
 * Streak of a daily goal. Walks the days from the first check-in to `today`:
 * a checked day adds one (and every 7th day of a streak earns a freeze, at most 2 held); a paused
 * day neither adds nor breaks; a missed day uses a freeze if one is held (the day is frozen),
 * else the streak ends. `today` without a check-in is still open and breaks nothing.
 * @param days check-in days of the goal (any order, repeats allowed)
 */
export function dailyStreak(days: Iterable<Day>, today: Day, pauses: readonly PauseRange[] = []): Streak {
  const done = new Set(days);
  const sorted = [...done].filter((d) => d <= today).sort();
  const res: Streak = { current: 0, best: 0, freezes: 0, frozen: [] };
  if (!sorted.length) return res;
  for (let d = sorted[0]!; d <= today; d = addDays(d, 1)) {
    if (done.has(d)) {
      res.current++;
      if (res.current % FREEZE_EVERY === 0) res.freezes = Math.min(MAX_FREEZES, res.freezes + 1);
      res.best = Math.max(res.best, res.current);
    } else if (d === today || isPaused(d, pauses)) {
    } else if (res.freezes > 0 && res.current > 0) {
      res.freezes--;
      res.frozen.push(d);
    } else {
      res.current = 0;
    }
  }
  return res;
}

/**
 * Streak of an "N times a week" goal: weeks (Monday-first, local) in a row that met the target.
 * A week's target shrinks with its paused days (`ceil(N × active days / 7)`); a fully paused week
 * is skipped. The current week counts once met and breaks nothing while open.
 * @param target check-in days per week, 1-7
 */
export function weeklyStreak(days: Iterable<Day>, today: Day, target: number, pauses: readonly PauseRange[] = []): Streak {
  const done = new Set([...days].filter((d) => d <= today));
  const res: Streak = { current: 0, best: 0, freezes: 0, frozen: [] };
  if (!done.size) return res;
  const thisWeek = weekStart(today);
  for (let w = weekStart([...done].sort()[0]!); w <= thisWeek; w = addDays(w, 7)) {
    let active = 0;
    let count = 0;
    for (let i = 0; i < 7; i++) {
      const d = addDays(w, i);
      if (!isPaused(d, pauses)) active++;
      if (done.has(d)) count++;
    }
    if (active === 0) continue;
    const need = Math.ceil((target * active) / 7);
    if (count >= need) {
      res.current++;
      res.best = Math.max(res.best, res.current);
    } else if (w !== thisWeek) res.current = 0;
  }
  return res;
}

/** Points of the k-th check-in (1-based) of one goal on one day: 10, 5, 2, 1, then 0. */
export function checkinPoints(k: number): number {
  return k >= 1 ? ([10, 5, 2, 1][k - 1] ?? 0) : 0;
}

/** Points needed to reach level `n` (1-based): 50 × n × (n − 1) / 2 → 0, 50, 150, 300, 500… */
export function levelThreshold(n: number): number {
  return (50 * n * (n - 1)) / 2;
}

/** A user's level from their points. */
export interface Level {
  level: number;
  /** Points at which this level started. */
  from: number;
  /** Points at which the next level starts. */
  next: number;
}

/** The level reached with `points` on the curve of {@link levelThreshold}. */
export function levelFor(points: number): Level {
  let n = 1;
  while (levelThreshold(n + 1) <= points) n++;
  return { level: n, from: levelThreshold(n), next: levelThreshold(n + 1) };
}
