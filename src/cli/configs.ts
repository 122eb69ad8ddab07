import { formatProblem, loadBotConfigs, requireBotConfigs, type BrokenFile, type LoadOptions } from "../config/load.js";
import type { BotConfig } from "../config/schema.js";
import { ConfigError } from "../errors.js";
import { botSecrets, registerEnvSecrets, registerSecrets } from "../secrets.js";
import type { CliContext } from "./context.js";

// Loading bot configs (YAML parser, zod schemas) lives apart from ./shared.js, so commands that
// only read the database (bots balance, bots status) do not load it at start.

/** Loads and validates every bot config of the context. @throws ConfigError (exit 2) */
export function loadBots(c: CliContext): BotConfig[] {
  const bots = requireBotConfigs(c.configDir, c.env);
  // Every bot's secrets, not only the selected ones', and the secret-named variables.
  registerSecrets(botSecrets(bots));
  registerEnvSecrets(c.env);
  return bots;
}

/**
 * Loads the configs for a command about the bots `names`: a file declaring one of them (or a
 * name used twice among them) must be valid; other files' problems do not stop the command.
 * @returns the valid bots and the other broken files (for a warning or a list)
 * @throws ConfigError (exit 2) with the problems of a named bot's file, or when the config dir is missing
 */
export function loadBotsNamed(c: CliContext, names: string[], options: LoadOptions = {}): { bots: BotConfig[]; broken: BrokenFile[] } {
  const loaded = loadBotConfigs(c.configDir, c.env, options);
  const fatal = loaded.problems.filter((p) => !loaded.broken.some((b) => b.problems.includes(p)));
  const mine = loaded.broken.filter((b) => names.includes(b.name));
  const problems = [...fatal, ...mine.flatMap((b) => b.problems)];
  if (problems.length)
    throw new ConfigError("CONFIG_INVALID", problems.map(formatProblem).join("\n"), {
      hint: "run `bots config check` after fixing; every problem is listed above",
    });
  registerSecrets(botSecrets(loaded.bots));
  registerEnvSecrets(c.env);
  return { bots: loaded.bots, broken: loaded.broken };
}

/** One stderr line naming bot files with problems that a command skipped. */
export function warnBroken(c: CliContext, broken: BrokenFile[]): void {
  if (!broken.length) return;
  const files = broken.map((b) => b.file).join(", ");
  c.err(
    `warning: ${broken.length === 1 ? "1 other bot file has" : `${broken.length} other bot files have`} problems and ${broken.length === 1 ? "was" : "were"} skipped: ${files} (bots config check lists them)`,
  );
}

/** Valid bots for a command about `names` (see {@link loadBotsNamed}), warning about other broken files. */
export function loadBotsWarn(c: CliContext, names: string[], options: LoadOptions = {}): BotConfig[] {
  const { bots, broken } = loadBotsNamed(c, names, options);
  warnBroken(c, broken);
  return bots;
}
