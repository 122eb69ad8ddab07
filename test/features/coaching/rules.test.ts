import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  addDays,
  checkinDay,
  checkinPoints,
  dailyStreak,
  dueInstant,
  levelFor,
  parseClock,
  weekday,
  weeklyStreak,
  weekStart,
  zonedInstant,
} from "../../../src/features/coaching/rules.js";

const BERLIN = "Europe/Berlin";

describe("coaching rules: days", () => {
  test("a check-in at 02:30 local counts for the day before (day starts at 04:00)", () => {
    // 2026-05-13 02:30 in Berlin (CEST, UTC+2) = 00:30 UTC
    assert.equal(checkinDay(Date.UTC(2026, 4, 13, 0, 30), BERLIN), "2026-05-12");
    assert.equal(checkinDay(Date.UTC(2026, 4, 13, 2, 0), BERLIN), "2026-05-13");
    // with day_starts_at 00:00 it is the calendar day
    assert.equal(checkinDay(Date.UTC(2026, 4, 13, 0, 30), BERLIN, 0), "2026-05-13");
  });

  test("day arithmetic and Monday-first weeks", () => {
    assert.equal(addDays("2026-02-28", 1), "2026-03-01");
    assert.equal(addDays("2026-03-01", -1), "2026-02-28");
    assert.equal(weekday("2026-03-29"), 7);
    assert.equal(weekday("2026-03-30"), 1);
    assert.equal(weekStart("2026-03-29"), "2026-03-23");
    assert.equal(parseClock("9:05"), 545);
    assert.equal(parseClock("24:00"), null);
  });

  test("local times across the Berlin clock changes map to the right instants", () => {
    // Before the spring change: CET, UTC+1
    assert.equal(zonedInstant("2026-03-28", 20 * 60, BERLIN), Date.UTC(2026, 2, 28, 19, 0));
    // The change day (02:00 → 03:00): 20:00 is CEST, UTC+2
    assert.equal(zonedInstant("2026-03-29", 20 * 60, BERLIN), Date.UTC(2026, 2, 29, 18, 0));
    // 02:30 does not exist that day: it maps to right after the gap (03:30 CEST = 01:30 UTC)
    assert.equal(zonedInstant("2026-03-29", 150, BERLIN), Date.UTC(2026, 2, 29, 1, 30));
    // Autumn (03:00 → 02:00): 02:30 happens twice, the first one (CEST) is taken
    assert.equal(zonedInstant("2026-10-25", 150, BERLIN), Date.UTC(2026, 9, 25, 0, 30));
    assert.equal(zonedInstant("2026-10-25", 20 * 60, BERLIN), Date.UTC(2026, 9, 25, 19, 0));
    // a reminder at 01:00 belongs to the check-in day before (day starts 04:00)
    const d = dueInstant(Date.UTC(2026, 4, 12, 20, 0), BERLIN, 60);
    assert.deepEqual(d, { day: "2026-05-12", dueMs: Date.UTC(2026, 4, 12, 23, 0) });
  });
});

describe("coaching rules: streaks", () => {
  test("daily goal: days in a row; an open today breaks nothing; a missed day breaks it", () => {
    assert.equal(dailyStreak(["2026-05-01", "2026-05-02", "2026-05-03"], "2026-05-03").current, 3);
    assert.equal(dailyStreak(["2026-05-01", "2026-05-02", "2026-05-03"], "2026-05-04").current, 3);
    const broken = dailyStreak(["2026-05-01", "2026-05-02", "2026-05-03"], "2026-05-05");
    assert.equal(broken.current, 0);
    assert.equal(broken.best, 3);
  });

  test("a freeze earned by 7 days covers one missed day; two missed days need two freezes", () => {
    const week = Array.from({ length: 7 }, (_, i) => addDays("2026-05-01", i));
    const s = dailyStreak([...week, "2026-05-09"], "2026-05-09");
    assert.equal(s.current, 8);
    assert.deepEqual(s.frozen, ["2026-05-08"]);
    assert.equal(s.freezes, 0);
    const two = dailyStreak([...week, "2026-05-10"], "2026-05-10");
    assert.equal(two.current, 1, "one freeze covers one day; the second missed day breaks the streak");
    // 14 days earn two freezes, never more than two
    const fortnight = Array.from({ length: 21 }, (_, i) => addDays("2026-05-01", i));
    assert.equal(dailyStreak(fortnight, "2026-05-21").freezes, 2);
  });

  test("paused days keep the streak; a backfilled day restores it", () => {
    const days = ["2026-05-01", "2026-05-02", "2026-05-06"];
    assert.equal(dailyStreak(days, "2026-05-06").current, 1);
    assert.equal(dailyStreak(days, "2026-05-06", [{ from: "2026-05-03", until: "2026-05-05" }]).current, 3);
    assert.equal(dailyStreak(["2026-05-01", "2026-05-03"], "2026-05-03").current, 1);
    assert.equal(dailyStreak(["2026-05-01", "2026-05-02", "2026-05-03"], "2026-05-03").current, 3);
  });

  test("weekly goal: weeks in a row that met the target; paused days lower it", () => {
    // target 3: week of 2026-05-04 met (3), week of 05-11 met (3), current week open
    const days = ["2026-05-04", "2026-05-06", "2026-05-08", "2026-05-11", "2026-05-12", "2026-05-13", "2026-05-18"];
    assert.equal(weeklyStreak(days, "2026-05-19", 3).current, 2);
    // a week with 1 of 3 breaks it
    assert.equal(weeklyStreak(["2026-05-04", "2026-05-06", "2026-05-08", "2026-05-11", "2026-05-18", "2026-05-19", "2026-05-20"], "2026-05-20", 3).current, 1);
    // a week paused from Tuesday needs ceil(3 × 1/7) = 1
    assert.equal(
      weeklyStreak(["2026-05-04", "2026-05-06", "2026-05-08", "2026-05-11"], "2026-05-19", 3, [{ from: "2026-05-12", until: "2026-05-17" }]).current,
      2,
    );
  });
});

describe("coaching rules: points and levels", () => {
  test("points diminish per goal per day", () => {
    assert.deepEqual([1, 2, 3, 4, 5].map(checkinPoints), [10, 5, 2, 1, 0]);
  });
  test("levels follow 0, 50, 150, 300, 500", () => {
    assert.equal(levelFor(0).level, 1);
    assert.equal(levelFor(49).level, 1);
    assert.deepEqual(levelFor(50), { level: 2, from: 50, next: 150 });
    assert.equal(levelFor(499).level, 4);
    assert.equal(levelFor(500).level, 5);
  });
});
