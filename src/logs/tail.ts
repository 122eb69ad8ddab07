import { closeSync, fstatSync, openSync, readSync, statSync, type Stats } from "node:fs";
import path from "node:path";
import { sleep } from "../lib/retry.js";
import { formatLogLine } from "../logging.js";
import { terminalSafe } from "../terminal.js";

/** pino's level numbers. */
export const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

/** Which lines to show. */
export interface LogFilter {
  /** Lowest level shown (`info`, `warn`...). Lines that are not JSON have no level and are hidden by it. */
  level?: string;
  /** Only lines at or after this time, epoch ms UTC. Lines without a time are hidden by it. */
  sinceMs?: number;
  /** Only lines containing this text (case-insensitive, in the raw line). */
  grep?: string;
}

/** Options of {@link tailLog}. */
export interface TailOptions extends LogFilter {
  /** The JSON-lines log file (pino, src/logging.ts). It may not exist yet when following. */
  file: string;
  /** Last lines shown before following (after filtering). @defaultValue 50 */
  lines?: number;
  /** Keep reading as the file grows, is rotated (renamed/recreated) or truncated. */
  follow?: boolean;
  /** Pass lines through as they are instead of formatting them. */
  json?: boolean;
  color?: boolean;
  /** Where each output line goes. */
  write(line: string): void;
  /** Ends following. */
  signal?: AbortSignal;
  /** How often a followed file is checked, ms. @defaultValue 250 */
  pollMs?: number;
}

/** The log file of a bot (`<dir>/<bot>.log`), or the process log (`<dir>/bots.log`). */
export function logFileFor(logDir: string, bot?: string): string {
  return path.join(logDir, bot ? `${bot}.log` : "bots.log");
}

/**
 * True when a raw log line passes the filter. Lines that are not JSON pass only when no level
 * or time filter is set.
 */
export function lineMatches(line: string, f: LogFilter): boolean {
  if (f.grep && !line.toLowerCase().includes(f.grep.toLowerCase())) return false;
  if (f.level === undefined && f.sinceMs === undefined) return true;
  let o: { level?: unknown; time?: unknown };
  try {
    o = JSON.parse(line) as typeof o;
  } catch {
    return false;
  }
  if (o === null || typeof o !== "object") return false;
  if (f.level !== undefined) {
    const n = typeof o.level === "number" ? o.level : LEVELS[String(o.level)];
    if (n === undefined || n < (LEVELS[f.level] ?? 0)) return false;
  }
  if (f.sinceMs !== undefined) {
    const t = typeof o.time === "number" ? o.time : typeof o.time === "string" ? Date.parse(o.time) : NaN;
    if (!(t >= f.sinceMs)) return false;
  }
  return true;
}

/**
 * Prints the last `lines` matching lines of a JSON log file, formatted with
 * {@link formatLogLine} (or raw with `json`), then with `follow` keeps printing new lines until
 * `signal` aborts. A last line still being written (no newline yet) is held back until it is
 * complete; lines that are not JSON are printed as they are. Following survives rotation (the
 * file renamed and a new one created: the rest of the old one is read first), truncation, and a
 * file that does not exist yet.
 * @returns the number of lines written
 */
export async function tailLog(o: TailOptions): Promise<number> {
  const out = (line: string) => {
    if (!line.trim() || !lineMatches(line, o)) return 0;
    o.write(o.json ? terminalSafe(line) : formatLogLine(line, o.color ?? false));
    return 1;
  };
  let written = 0;
  let fd: number | undefined;
  let ino: number | undefined;
  let pos = 0;
  let pending = "";
  const open = (): boolean => {
    try {
      fd = openSync(o.file, "r");
      ino = fstatSync(fd).ino;
      return true;
    } catch {
      fd = undefined;
      return false;
    }
  };
  /** Reads from `pos` to the end of the open file; returns the complete lines. */
  const drain = (): string[] => {
    if (fd === undefined) return [];
    const chunks: Buffer[] = [];
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n <= 0) break;
      chunks.push(Buffer.from(buf.subarray(0, n)));
      pos += n;
    }
    const text = pending + Buffer.concat(chunks).toString("utf8");
    const parts = text.split("\n");
    pending = parts.pop() ?? "";
    return parts;
  };

  if (open()) {
    // Only the last 8 MiB are read for the backlog, so a huge log starts at once.
    const size = fstatSync(fd!).size;
    const skipFirst = size > BACKLOG_BYTES;
    if (skipFirst) pos = size - BACKLOG_BYTES;
    const backlog = drain();
    if (skipFirst) backlog.shift();
    const lines = backlog.filter((l) => l.trim() && lineMatches(l, o));
    // Without -f a last line without newline is shown only if it is a whole JSON record.
    if (!o.follow && pending && isJson(pending) && lineMatches(pending, o)) lines.push(pending);
    for (const l of lines.slice(Math.max(0, lines.length - (o.lines ?? 50)))) written += out(l);
  }
  if (!o.follow) {
    if (fd !== undefined) closeSync(fd);
    return written;
  }
  try {
    while (!o.signal?.aborted) {
      await sleep(o.pollMs ?? 250, o.signal);
      if (o.signal?.aborted) break;
      if (fd === undefined) {
        if (!open()) continue;
        pos = 0;
        pending = "";
      }
      for (const l of drain()) written += out(l);
      let now: Stats | undefined;
      try {
        now = statSync(o.file);
      } catch {
        now = undefined;
      }
      if (now && now.ino !== ino) {
        // Rotated: the old file is fully read above; a partial last line there is complete now.
        if (pending) written += out(pending);
        closeSync(fd!);
        fd = undefined;
        if (open()) {
          pos = 0;
          pending = "";
          for (const l of drain()) written += out(l);
        }
      } else if (now && now.size < pos) {
        // Truncated in place (copytruncate): start again from the top.
        pos = 0;
        pending = "";
      }
    }
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return written;
}

const BACKLOG_BYTES = 8 * 1024 * 1024;

function isJson(s: string): boolean {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
}
