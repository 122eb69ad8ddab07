/**
 * Wall-clock time in IANA time zones (`Europe/Moscow`), through `Intl.DateTimeFormat`, so each
 * zone's DST rules apply. One cached formatter per zone: building one loads zone data (tens of
 * ms the first time). Times are epoch ms UTC.
 */

/** The wall-clock fields of an instant in a zone; month 1-12, hour 0-23 (24 h clock). */
export interface WallParts {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/**
 * One `Intl.DateTimeFormat` per (`locale`, `options`, zone), built once: building one loads the
 * zone's data (tens of ms the first time, about a millisecond after). `key` names the options
 * (callers keep one key per options object).
 * @throws RangeError for a zone this Node.js does not know
 */
export function cachedFormat(key: string, locale: string, options: Intl.DateTimeFormatOptions, zone: string): Intl.DateTimeFormat {
  const id = `${key}|${zone}`;
  let f = formatters.get(id);
  if (!f) {
    f = new Intl.DateTimeFormat(locale, { ...options, timeZone: zone });
    formatters.set(id, f);
  }
  return f;
}

const WALL: Intl.DateTimeFormatOptions = {
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
};

function formatter(zone: string): Intl.DateTimeFormat {
  return cachedFormat("wall", "en-US", WALL, zone);
}

/**
 * The wall-clock date and time of `ms` in `zone`.
 * @throws RangeError for a zone this Node.js does not know
 */
export function wallParts(ms: number, zone: string): WallParts {
  const p: Record<string, string> = {};
  for (const x of formatter(zone).formatToParts(ms)) p[x.type] = x.value;
  return {
    year: Number(p.year),
    month: Number(p.month),
    day: Number(p.day),
    hour: Number(p.hour),
    minute: Number(p.minute),
    second: Number(p.second),
  };
}

const pad = (n: number) => String(n).padStart(2, "0");

/** `YYYY-MM-DD` of a {@link WallParts}. */
export function isoDay(p: WallParts): string {
  return `${p.year}-${pad(p.month)}-${pad(p.day)}`;
}

/** `YYYY-MM-DD HH:MM:SS` of a {@link WallParts}. */
export function isoDateTime(p: WallParts): string {
  return `${isoDay(p)} ${pad(p.hour)}:${pad(p.minute)}:${pad(p.second)}`;
}

/**
 * Offset of `zone` from UTC at the instant `ms`, in ms (Moscow: +10 800 000).
 * @throws RangeError for an unknown zone
 */
export function offsetMs(ms: number, zone: string): number {
  const p = wallParts(ms, zone);
  const asUtc = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  return asUtc - (ms - (((ms % 1000) + 1000) % 1000));
}

/**
 * The instant of a wall-clock time in `zone` (DST aware: near a change the offset at the answer
 * decides). `month` is 1-12.
 * @returns epoch ms UTC
 * @throws RangeError for an unknown zone
 */
export function zonedTimeToUtc(
  year: number,
  month: number,
  day: number,
  hour: number,
  minute: number,
  second: number,
  millisecond: number,
  zone: string,
): number {
  const naive = Date.UTC(year, month - 1, day, hour, minute, second, millisecond);
  const first = naive - offsetMs(naive, zone);
  return naive - offsetMs(first, zone);
}

/**
 * Midnight of the local day containing `nowMs` in `zone`, as epoch ms UTC.
 * @throws RangeError for an unknown zone
 */
export function startOfDayMs(nowMs: number, zone: string): number {
  const p = wallParts(nowMs, zone);
  return zonedTimeToUtc(p.year, p.month, p.day, 0, 0, 0, 0, zone);
}
