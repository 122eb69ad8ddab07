import chalk from "chalk";
import { LEVELS, logFileFor, tailLog } from "../logs/tail.js";
import { UsageError } from "../errors.js";
import type { CliContext } from "./context.js";
import { parseCount, parseWhen } from "./time.js";

/** Options of `bots logs tail`. */
export interface LogsTailOptions {
  follow?: boolean;
  lines: string;
  level?: string;
  since?: string;
  grep?: string;
}

/**
 * `bots logs tail [BOT]`: the last lines of `logs/<BOT>.log` (or `logs/bots.log`), readable and
 * coloured, or raw with `--json`; `-f` follows until Ctrl-C.
 * @throws UsageError (exit 2) for bad options or a missing log file without `-f`
 */
export async function logsTailCommand(c: CliContext, bot: string | undefined, opts: LogsTailOptions): Promise<void> {
  const lines = parseCount(opts.lines, "-n", 0, 1_000_000);
  if (opts.level !== undefined && !(opts.level in LEVELS))
    throw new UsageError("LEVEL_INVALID", `--level '${opts.level}' is not a level`, { hint: Object.keys(LEVELS).join(", ") });
  if (bot !== undefined && !/^[a-z0-9-]+$/.test(bot))
    throw new UsageError("BOT_INVALID", `'${bot}' is not a bot name`, { hint: "lowercase letters, digits and '-'" });
  const sinceMs = opts.since !== undefined ? parseWhen(opts.since, Date.now(), "--since") : undefined;
  const file = logFileFor(c.logDir, bot);
  const { existsSync } = await import("node:fs");
  if (!existsSync(file) && !opts.follow)
    throw new UsageError("LOG_MISSING", `no log file ${file}`, { hint: "bots write logs there while running (see --log-dir); -f waits for it" });
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once("SIGINT", stop);
  try {
    if (opts.follow && !c.json && c.interactive) c.err(chalk.dim(`Following ${file} (Ctrl-C to stop)`));
    await tailLog({
      file,
      lines,
      follow: opts.follow,
      json: c.json,
      color: c.color,
      level: opts.level,
      sinceMs,
      grep: opts.grep,
      write: c.out,
      signal: ac.signal,
    });
  } finally {
    process.off("SIGINT", stop);
  }
}
