import { durationMs } from "../lib/duration.js";
import { UsageError } from "../errors.js";

/**
 * Parses a point in time given on the command line: a duration back from `nowMs` (`90s`, `10m`,
 * `24h`, `2d`, `1w`) or an ISO 8601 date/time (`2026-11-20`, `2026-11-20T08:00`, with or without
 * a zone; without one it is read as UTC).
 * @param option the option's name, for the error
 * @returns epoch ms UTC
 * @throws UsageError (exit 2) for anything else
 */
export function parseWhen(text: string, nowMs: number, option: string): number {
  const t = text.trim();
  const back = durationMs(t.toLowerCase());
  if (back !== undefined) return nowMs - back;
  if (/^\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?)?(Z|[+-]\d\d:?\d\d)?$/i.test(t)) {
    const hasZone = /(Z|[+-]\d\d:?\d\d)$/i.test(t) && t.length > 10;
    const iso = t.replace(" ", "T");
    const ms = Date.parse(hasZone ? iso : iso.length === 10 ? `${iso}T00:00:00Z` : `${iso}Z`);
    if (!Number.isNaN(ms)) return ms;
  }
  throw new UsageError("TIME_INVALID", `${option} '${text}' is neither a duration nor a date`, {
    hint: "use e.g. 30m, 24h, 2d, or 2026-11-20 / 2026-11-20T08:00Z",
  });
}

/**
 * Parses a whole number option within bounds.
 * @throws UsageError (exit 2) otherwise
 */
export function parseCount(text: string, option: string, min = 1, max = 1_000_000): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max)
    throw new UsageError("NUMBER_INVALID", `${option} must be a whole number from ${min} to ${max}, got '${text}'`);
  return n;
}
