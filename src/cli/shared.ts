import { existsSync, readdirSync } from "node:fs";
import { closest } from "../core/closest.js";
import { ConfigError, UsageError } from "../errors.js";
import { openStore, type Store } from "../storage/index.js";
import type { CliContext } from "./context.js";

/**
 * {@link withStore} for overviews (`status`, `balance`): in a project whose config dir has bot
 * files but no database yet (before the first `bots start`), `fn` reads an empty in-memory
 * database instead, and `missing` says where the database will be. Nothing is created on disk.
 * @throws UsageError `DB_MISSING` (exit 2) when the config dir has no bot files either
 */
export async function withStoreOrEmpty<T>(c: CliContext, fn: (store: Store) => Promise<T>): Promise<{ result: T; missing?: string }> {
  try {
    return { result: await withStore(c, fn) };
  } catch (error) {
    if ((error as { code?: string }).code !== "DB_MISSING" || !configDirState(c).bots) throw error;
    const missing = (error as Error).message.split("\n")[0]!;
    return { result: await withStore({ ...c, dbUrl: "sqlite::memory:" }, fn, { create: true }), missing };
  }
}

/** Where a command looked: the config dir and whether it is there. */
function configDirState(c: CliContext): { exists: boolean; bots: number } {
  if (!existsSync(c.configDir)) return { exists: false, bots: 0 };
  return { exists: true, bots: readdirSync(c.configDir).filter((f) => /\.ya?ml$/.test(f)).length };
}

/** `no database at …`, saying where the command looked and what to do (exit 2). */
function missingDatabase(c: CliContext, error: Error): UsageError {
  const dir = configDirState(c);
  const lines = [
    error.message,
    dir.exists ? `configs: ${c.configDir} (${dir.bots} bot file${dir.bots === 1 ? "" : "s"})` : `configs: ${c.configDir} does not exist either`,
  ];
  const hint =
    dir.exists && dir.bots
      ? "bots start or bots balance add creates the database; or pass --db URL (env DATABASE_URL) if it is elsewhere"
      : "run bots in the project folder, or pass --config-dir DIR and --db URL; to start a new project: bots init";
  return new UsageError("DB_MISSING", lines.join("\n"), { hint, cause: error });
}

/**
 * Checks that the config dir has bot files before a command that runs bots.
 * @throws ConfigError `NO_CONFIGS` (exit 2) suggesting `--config-dir` or `bots init`
 */
export function requireConfigDir(c: CliContext): void {
  const dir = configDirState(c);
  if (dir.bots) return;
  throw new ConfigError("NO_CONFIGS", dir.exists ? `no bot files (*.yaml) in ${c.configDir}` : `no config dir at ${c.configDir}`, {
    hint: "run bots in the project folder or pass --config-dir DIR; to create a bot: bots init",
  });
}

/**
 * The error for a bot name that neither a config file nor the database knows: exit 2,
 * `no bot named 'X' (did you mean 'Y'?)`, with the known names as the hint.
 */
export function noSuchBot(name: string, known: Iterable<string>): UsageError {
  const names = [...new Set(known)].sort();
  const guess = closest(name, names);
  return new UsageError("UNKNOWN_BOT", `no bot named '${name}'${guess ? ` (did you mean '${guess}'?)` : ""}`, {
    hint: `bots: ${names.join(", ") || "none (bots status lists the config dir)"}`,
  });
}

/**
 * Opens the database (migrating it) for a command, runs `fn`, closes it. Only a command that
 * writes passes `create`: a command that reads never creates a database in a wrong folder, it
 * says where it looked instead.
 * @throws UsageError `DB_MISSING` (exit 2) without `create` when there is no database
 */
export async function withStore<T>(c: CliContext, fn: (store: Store) => Promise<T>, opts: { create?: boolean } = {}): Promise<T> {
  let store: Store;
  try {
    store = await openStore(c.dbUrl, { mustExist: !opts.create });
  } catch (error) {
    if ((error as { code?: string }).code === "DB_MISSING") throw missingDatabase(c, error as Error);
    throw error;
  }
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

const FORMATS = new Map<string, Intl.DateTimeFormat>();

/**
 * Formats epoch ms as the local time of an IANA zone with its offset, `2026-11-20 14:05 +03:00`:
 * the rule of every CLI view (a bot's time in its `timezone`, with the offset so it reads
 * unambiguously beside other zones). `UTC` gives `+00:00`.
 */
export function formatTime(ms: number, timeZone = "UTC"): string {
  // UTC needs no time zone data (building the first Intl formatter loads it: tens of ms).
  if (timeZone === "UTC" || timeZone === "Etc/UTC") return `${new Date(ms).toISOString().slice(0, 16).replace("T", " ")} +00:00`;
  let format = FORMATS.get(timeZone);
  if (!format)
    FORMATS.set(
      timeZone,
      (format = new Intl.DateTimeFormat("en-GB", {
        timeZone,
        year: "numeric",
        month: "2-digit",
        day: "2-digit",
        hour: "2-digit",
        minute: "2-digit",
        hourCycle: "h23",
        timeZoneName: "longOffset",
      })),
    );
  const p = Object.fromEntries(format.formatToParts(ms).map((x) => [x.type, x.value]));
  // longOffset: "GMT+03:00", or "GMT" at offset zero.
  const offset = (p.timeZoneName ?? "GMT").replace(/^GMT/, "") || "+00:00";
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute} ${offset}`;
}

/**
 * The zone an account's times are shown in: its bots' `timezone` when they all agree, else
 * UTC (an account shared by bots in different zones has no single local time).
 */
export function accountZone(account: string, bots: Array<{ timezone: string; balance: { account: string } }>): string {
  const zones = new Set(bots.filter((b) => b.balance.account === account).map((b) => b.timezone));
  return zones.size === 1 ? [...zones][0]! : "UTC";
}

/** Renders rows as an aligned text table with a header. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(visibleLength(h), ...rows.map((r) => visibleLength(r[i] ?? ""))));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => cell + " ".repeat(widths[i]! - visibleLength(cell)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

function visibleLength(s: string): number {
  return s.replace(/\u001b\[[0-9;]*m/g, "").length;
}
