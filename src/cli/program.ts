import { Command, CommanderError } from "commander";
import chalk from "chalk";
import { BotsError, ConfigError, ExitError, UsageError } from "../errors.js";
import { resolveContext, type CliContext, type CliIo, type GlobalOptions } from "./context.js";

/**
 * Builds the `bots` program (SPEC §2). Commands load their modules on demand, so `bots --help`
 * imports no channel, model or database library.
 */
export function buildProgram(io: CliIo = { stdout: process.stdout, stderr: process.stderr, stdinIsTTY: process.stdin.isTTY }): Command {
  const program = new Command("bots")
    .description("Run LLM chat bots for businesses on Telegram, VK and 2GIS from per-bot YAML files.")
    .version("0.1.0", "-V, --version")
    .option("--config-dir <dir>", "folder of bot YAML files (env BOTS_CONFIG_DIR)", undefined)
    .option("--env-file <file>", "env file with secrets (default .env if present)")
    .option("--db <url>", "database: sqlite:PATH or mysql://user:pass@host:3306/db (env DATABASE_URL; default sqlite:data/bots.db)")
    .option("--log-dir <dir>", "folder for JSON logs (default ./logs)")
    .option("--json", "machine-readable output on stdout")
    .option("--no-color", "no colours (also NO_COLOR)")
    .option("-v, --verbose", "debug logs and stack traces")
    .showHelpAfterError("(run with --help for usage)")
    .configureOutput({ writeOut: (s) => void io.stdout.write(s), writeErr: (s) => void io.stderr.write(s) })
    .exitOverride();

  const ctx = (cmd: Command): CliContext => resolveContext(cmd.optsWithGlobals<GlobalOptions>(), io);
  const run = (fn: (c: CliContext, cmd: Command) => Promise<void>) => async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const c = ctx(cmd);
    try {
      await fn(c, cmd);
    } catch (error) {
      throw reportError(error, c);
    }
  };

  program
    .command("start")
    .description("run bots until Ctrl-C / SIGTERM")
    .argument("[target...]", "bot names or channels (tg, vk, 2gis); none = every enabled bot")
    .option("--drain-timeout <s>", "seconds to let answers in flight finish on shutdown", "10")
    .addHelpText("after", "\nExamples:\n  bots start            # every enabled bot\n  bots start tg         # every Telegram bot\n  bots start shop-tg    # one bot")
    .action(run(async (c, cmd) => (await import("./start.js")).startCommand(c, cmd.args, cmd.opts())));

  const balance = program
    .command("balance")
    .description("show prepaid balances; `balance add` tops up, `balance history` shows the ledger")
    .option("--account <name>", "one account")
    .action(run(async (c, cmd) => (await import("./balance.js")).showBalance(c, cmd.opts())));
  balance
    .command("add")
    .description("top up an account")
    .argument("<amount>", "credits: 500, 12.5 or 12,50")
    .option("--account <name>", "account to top up", "default")
    .option("--note <text>", "note kept in the ledger")
    .option("-y, --yes", "do not ask for confirmation")
    .addHelpText("after", "\nExamples:\n  bots balance add 500\n  bots balance add 12,50 --account client-a --note 'invoice 42' --yes")
    .action(run(async (c, cmd) => (await import("./balance.js")).addBalance(c, cmd.args[0]!, cmd.opts())));
  balance
    .command("history")
    .description("the ledger, newest first")
    .option("--account <name>", "one account")
    .option("--limit <n>", "rows", "20")
    .action(run(async (c, cmd) => (await import("./balance.js")).balanceHistory(c, cmd.opts())));

  const config = program.command("config").description("configuration tools");
  config
    .command("check")
    .description("validate every bot config; print problems as file:line: field: message")
    .action(run(async (c) => (await import("./config.js")).checkCommand(c)));

  const db = program.command("db").description("database tools");
  db.command("migrate")
    .description("apply database migrations")
    .action(run(async (c) => (await import("./db.js")).migrateCommand(c)));

  // Commands of SPEC §2 that later versions bring.
  const later = (name: string, description: string, args = "[args...]") =>
    program
      .command(name)
      .description(`${description} (not yet available)`)
      .argument(args)
      .allowUnknownOption()
      .action(run(async () => {
        throw new UsageError("NOT_AVAILABLE", `'bots ${name}' is not yet available in this version`, { hint: "see README for what this version does" });
      }));
  later("poll", "one pass over a channel's new items, for cron: poll 2gis [BOT...]");
  later("replay", "re-run stored incoming messages through the current prompt and model");
  program
    .command("prompt")
    .description("prompt tools")
    .command("test")
    .description("one answer from a bot's prompt and model; --cases FILE runs expectations (not yet available)")
    .argument("[args...]")
    .allowUnknownOption()
    .action(run(async () => {
      throw new UsageError("NOT_AVAILABLE", "'bots prompt test' is not yet available in this version");
    }));
  program
    .command("logs")
    .description("log tools")
    .command("tail")
    .description("pretty view of the JSON logs (not yet available)")
    .argument("[args...]")
    .allowUnknownOption()
    .action(run(async () => {
      throw new UsageError("NOT_AVAILABLE", "'bots logs tail' is not yet available in this version");
    }));
  later("init", "interactive wizard that writes a new bot YAML and prompt file");
  program
    .command("report")
    .description("reports")
    .command("send")
    .description("build the HTML dialog report of a period and e-mail it (or write it with --out)")
    .option("--bot <name>", "one bot (default: every enabled bot with features.report)")
    .option("--since <duration>", "period ending now: 24h, 7d, 90m", "24h")
    .option("--to <addr>", "recipients, comma-separated (default: report.to)")
    .option("--out <file>", "write the HTML to this file instead of mailing it")
    .addHelpText("after", "\nExamples:\n  bots report send                          # every bot with features.report, last 24 h\n  bots report send --bot shop-tg --since 7d --to boss@example.com\n  bots report send --bot shop-tg --out report.html")
    .action(run(async (c, cmd) => (await import("./report.js")).reportSendCommand(c, cmd.opts())));
  later("status", "bots, balances and today's messages");

  return program;
}

/**
 * Prints an error as one line (plus a hint) and converts it to an {@link ExitError}: 2 for
 * usage and configuration errors, 1 for everything else.
 */
export function reportError(error: unknown, c: Pick<CliContext, "err" | "json" | "verbose">): ExitError {
  if (error instanceof ExitError) return error;
  const code = error instanceof ConfigError || error instanceof UsageError ? 2 : 1;
  if (c.json) {
    c.err(JSON.stringify(error instanceof BotsError ? error.toJSON() : { error: "Error", message: (error as Error)?.message ?? String(error) }));
  } else {
    const message = error instanceof Error ? error.message : String(error);
    const lines = message.split("\n");
    c.err(`${chalk.red("error:")} ${lines[0]}`);
    for (const l of lines.slice(1)) c.err(`  ${l}`);
    if (error instanceof BotsError && error.hint) c.err(chalk.dim(`  hint: ${error.hint}`));
  }
  if (c.verbose && error instanceof Error && error.stack) c.err(chalk.dim(error.stack));
  return new ExitError(code, error instanceof Error ? error.message : String(error));
}

/**
 * Runs the program on `argv` (without node and script) and returns the exit code instead of
 * exiting: 0 ok, 1 runtime failure, 2 usage or configuration error.
 */
export async function runCli(argv: string[], io?: CliIo): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof ExitError) return error.exitCode;
    if (error instanceof CommanderError) {
      if (error.code === "commander.helpDisplayed" || error.code === "commander.version" || error.code === "commander.help") return 0;
      return error.exitCode === 0 ? 0 : 2;
    }
    const e = reportError(error, { err: (l) => void (io?.stderr ?? process.stderr).write(l + "\n"), json: false, verbose: argv.includes("-v") || argv.includes("--verbose") });
    return e.exitCode;
  }
}
