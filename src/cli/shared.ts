import { requireBotConfigs } from "../config/load.js";
import { closest } from "../core/closest.js";
import { UsageError } from "../errors.js";
import type { BotConfig } from "../config/schema.js";
import { openStore, type Store } from "../storage/index.js";
import type { CliContext } from "./context.js";

/** Loads and validates every bot config of the context. @throws ConfigError (exit 2) */
export function loadBots(c: CliContext): BotConfig[] {
  return requireBotConfigs(c.configDir, c.env);
}

/**
 * The error for a bot name that neither a config file nor the database knows: exit 2,
 * `no bot named 'X' (did you mean 'Y'?)`, with the known names as the hint.
 */
export function noSuchBot(name: string, known: Iterable<string>): UsageError {
  const names = [...new Set(known)].sort();
  const guess = closest(name, names);
  return new UsageError("UNKNOWN_BOT", `no bot named '${name}'${guess ? ` (did you mean '${guess}'?)` : ""}`, { hint: `bots: ${names.join(", ") || "none (bots status lists the config dir)"}` });
}

/** Opens the database (migrating it) for a command, runs `fn`, closes it. */
export async function withStore<T>(c: CliContext, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore(c.dbUrl);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** Formats epoch ms as `YYYY-MM-DD HH:MM UTC`. */
export function formatTime(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** Renders rows as an aligned text table with a header. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(visibleLength(h), ...rows.map((r) => visibleLength(r[i] ?? ""))));
  const line = (cells: string[]) => cells.map((cell, i) => cell + " ".repeat(widths[i]! - visibleLength(cell))).join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

function visibleLength(s: string): number {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\u001b\[[0-9;]*m/g, "").length;
}
