import { isatty } from "node:tty";
import { Command, CommanderError, type HelpContext } from "commander";
import { closest } from "../core/closest.js";
import { BotsError, ConfigError, ExitError, UsageError } from "../errors.js";
import { flushAllLogs } from "../log-flush.js";
import type { CliContext, CliIo, GlobalOptions } from "./context.js";

/** Exit code of `bots` (or `bots config`, `bots db`...) without a command: the help on stdout, then 1. */
export const EXIT_NO_COMMAND = 1;

/**
 * A commander command whose "help because no subcommand was given" goes to stdout (it is what
 * the operator asked to see) and ends with {@link EXIT_NO_COMMAND}, like git.
 */
class BotsCommand extends Command {
  override createCommand(name?: string): BotsCommand {
    return new BotsCommand(name);
  }

  override help(context?: HelpContext | ((str: string) => string)): never {
    if (typeof context === "function" || !context?.error) return super.help(context as HelpContext);
    this.outputHelp();
    throw new CommanderError(EXIT_NO_COMMAND, "bots.noCommand", "no command given");
  }
}

/** The error for `bots balance ad 5`: an unknown subcommand of a command that has an action too. */
function unknownSubcommand(cmd: Command, word: string): UsageError {
  const guess = closest(
    word,
    cmd.commands.map((c) => c.name()),
  );
  return new UsageError("UNKNOWN_COMMAND", `unknown command '${cmd.name()} ${word}'${guess ? ` (did you mean ${guess}?)` : ""}`, {
    hint: `${cmd.name()} has: ${cmd.commands.map((c) => c.name()).join(", ")}; see bots ${cmd.name()} --help`,
  });
}

/** The top-level commands, in the order `bots --help` lists them. */
const COMMANDS = ["start", "demo", "balance", "config", "db", "poll", "replay", "prompt", "logs", "init", "report", "coaching", "dialogs", "status"] as const;
/**
 * Each top-level command's module, as its action imports it. {@link runCli} starts importing the
 * one `argv` names (and ./context.js) before commander builds and parses: reading and compiling
 * them overlaps that work instead of following it (bench/cli-start.ts).
 */
const MODULES = {
  start: () => import("./start.js"),
  demo: () => import("./demo.js"),
  balance: () => import("./balance.js"),
  config: () => import("./config.js"),
  db: () => import("./db.js"),
  poll: () => import("./poll.js"),
  replay: () => import("./replay.js"),
  prompt: () => import("./prompt.js"),
  logs: () => import("./logs.js"),
  init: () => import("./init.js"),
  report: () => import("./report.js"),
  coaching: () => import("./coaching.js"),
  dialogs: () => import("./dialogs.js"),
  status: () => import("./status.js"),
} satisfies Record<(typeof COMMANDS)[number], () => Promise<unknown>>;
/** Global options that take a value (the next word, unless written `--opt=value`). */
const GLOBAL_VALUE_OPTIONS = new Set(["--config-dir", "--env-file", "--db", "--log-dir"]);

/**
 * The top-level command `argv` runs, when it names one exactly and asks for no program-level
 * help or version before it; undefined otherwise (every command is then built: help, "did you
 * mean", no command).
 */
export function commandOf(argv: string[]): (typeof COMMANDS)[number] | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "-h" || a === "--help" || a === "-V" || a === "--version" || a === "--") return undefined;
    if (GLOBAL_VALUE_OPTIONS.has(a)) i++;
    else if (!a.startsWith("-")) return (COMMANDS as readonly string[]).includes(a) ? (a as (typeof COMMANDS)[number]) : undefined;
  }
  return undefined;
}

/**
 * Builds the `bots` program (README, "Commands"). Commands load their modules on demand, so `bots --help`
 * imports no channel, model or database library, nor chalk, dotenv, yaml or zod: only commander
 * and this file (bench/cli-start.ts measures it).
 * @param only build just this top-level command ({@link commandOf}): defining every command and
 * its options costs each start more than running a short one; undefined builds them all
 */
export function buildProgram(
  // isatty(0) instead of process.stdin.isTTY: the same answer without creating the stdin stream.
  io: CliIo = { stdout: process.stdout, stderr: process.stderr, stdinIsTTY: isatty(0) },
  only?: string,
): Command {
  const wants = (name: (typeof COMMANDS)[number]) => only === undefined || only === name;
  const program = new BotsCommand("bots")
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

  // `--json` is a global option; commands that honour it also list it in their own help.
  const JSON_HELP = "--json";
  const ctx = async (cmd: Command): Promise<CliContext> => (await import("./context.js")).resolveContext(cmd.optsWithGlobals<GlobalOptions>(), io);
  const run =
    (fn: (c: CliContext, cmd: Command) => Promise<void>) =>
    async (...args: unknown[]) => {
      const cmd = args[args.length - 1] as Command;
      const c = await ctx(cmd);
      try {
        await fn(c, cmd);
      } catch (error) {
        throw await reportError(error, c);
      }
    };

  if (wants("start")) {
    program
      .command("start")
      .description("run bots until Ctrl-C / SIGTERM")
      .argument("[target...]", "bot names or channels (tg, vk, 2gis); none = every enabled bot")
      .option("--drain-timeout <s>", "seconds to let answers in flight finish on shutdown", "10")
      .option("--http-port <port>", "HTTP port for /metrics, /healthz, /readyz: a port, 0 = any free port, off = no server", "8080")
      .option("--http-host <host>", "interface the HTTP server binds", "127.0.0.1")
      .option("--instance-id <id>", "this instance's id among several on one database (default host:pid:random)")
      .option("--lease-ttl <s>", "seconds without a heartbeat after which an instance is dead and its bots are taken over", "15")
      .option("--health-threshold <s>", "seconds a bot's channel calls may keep failing before /healthz reports it", "120")
      .option(
        "--metrics-token <token>",
        "bearer token required by /metrics and for /healthz, /readyz details (env BOTS_METRICS_TOKEN, which keeps it out of `ps`)",
      )
      .option("--strict", "start nothing while any bot file has a problem (default: start the valid bots, list the others)")
      .addHelpText(
        "after",
        "\nExamples:\n  bots start            # every enabled, valid bot (files with problems are listed, not started)\n  bots start tg         # every Telegram bot\n  bots start shop-tg    # one bot\n  bots start --http-port 9464 --http-host 0.0.0.0   # metrics for a remote Prometheus",
      )
      .action(run(async (c, cmd) => (await import("./start.js")).startCommand(c, cmd.args, cmd.opts())));
  }
  if (wants("demo")) {
    program
      .command("demo")
      .description("chat with the example shop bot on a local Bot API and a demo model: no token, no key; nothing is left behind")
      .option("--keep <dir>", "keep the demo's configs, SQLite database and logs in DIR (reused on the next run)")
      .addHelpText(
        "after",
        [
          "",
          "Runs configs/examples/shop-tg.yaml through the real pipeline: every message is recorded,",
          "charged (100 credits to start, 5.00 an answer) and answered by a demo model that quotes the",
          "most fitting lines of prompts/shop.md. Without a terminal it reads one message per line and",
          "exits 0 at the end of input. Your .env, configs and database are not touched.",
          "",
          "Examples:",
          "  bots demo",
          "  printf 'Hello\\n/start\\nСколько стоит доставка?\\n' | bots demo",
          "  bots demo --keep demo   # then: bots --db sqlite:demo/bots.db balance",
        ].join("\n"),
      )
      .action(run(async (c, cmd) => (await import("./demo.js")).demoCommand(c, cmd.opts())));
  }
  if (wants("balance")) {
    const balance = program
      .command("balance")
      .description("show prepaid balances; `balance add` tops up, `balance history` shows the ledger")
      .option("--account <name>", "one account")
      .option(JSON_HELP, "print {accounts: [{account, balance, balance_hundredths, replies_left, last_movement_at}]}")
      .allowExcessArguments()
      .addHelpText(
        "after",
        "\nExamples:\n  bots balance                      # every account, replies left, last movement\n  bots balance --account client-a\n  bots balance --json | jq '.accounts[] | select(.replies_left < 100)'",
      )
      .action(
        run(async (c, cmd) => {
          // An action with subcommands takes any other word as an argument: say what was meant.
          if (cmd.args.length) throw unknownSubcommand(cmd, cmd.args[0]!);
          return (await import("./balance.js")).showBalance(c, cmd.opts());
        }),
      );
    balance
      .command("add")
      .description("top up an account")
      .argument("<amount>", "credits: 500, 12.5 or 12,50")
      .option("--account <name>", "account to top up (default: default)")
      .option("--note <text>", "note kept in the ledger")
      .option("-y, --yes", "do not ask for confirmation")
      .option("--new-account", "open the account: needed when no bot config names it and it has no ledger yet")
      .option(JSON_HELP, "print {account, added, balance, balance_hundredths, ledger_id}")
      .addHelpText(
        "after",
        "\nExamples:\n  bots balance add 500\n  bots balance add 12,50 --account client-a --note 'invoice 42' --yes\n  bots balance add 100 --account client-b --new-account   # before any config names client-b",
      )
      .action(run(async (c, cmd) => (await import("./balance.js")).addBalance(c, cmd.args[0]!, cmd.optsWithGlobals())));
    balance
      .command("adjust")
      .description("correct an account by a signed amount; written to the ledger as `adjust` with a note")
      .argument("<amount>", "signed credits: -10 takes 10.00 back, 2.50 adds")
      .option("--account <name>", "account to correct (required)")
      .option("--note <text>", "why (required; kept in the ledger)")
      .option("-y, --yes", "do not ask for confirmation")
      .option(JSON_HELP, "print {account, adjusted, balance, balance_hundredths, ledger_id}")
      .addHelpText(
        "after",
        [
          "",
          "The ledger is append-only: an adjustment is a new row, so the ledger still sums to the balance.",
          "It cannot take the balance below zero, and only corrects an account that has a ledger.",
          "",
          "Examples:",
          '  bots balance adjust -- -10 --account defualt --note "top-up to a mistyped account"',
          '  bots balance adjust 2.50 --account client-a --note "goodwill for the outage" --yes',
        ].join("\n"),
      )
      .action(run(async (c, cmd) => (await import("./balance.js")).adjustBalance(c, cmd.args[0]!, cmd.optsWithGlobals())));
    balance
      .command("history")
      .description("the ledger, newest first")
      .option("--account <name>", "one account")
      .option("--limit <n>", "rows", "20")
      .option(JSON_HELP, "print {ledger: [{id, account, reason, delta, balance_after, message_id, note, at}]}")
      .addHelpText(
        "after",
        "\nExamples:\n  bots balance history\n  bots balance history --account client-a --limit 100\n  bots balance history --json | jq -r '.ledger[] | select(.reason == \"topup\") | .delta'",
      )
      .action(run(async (c, cmd) => (await import("./balance.js")).balanceHistory(c, cmd.optsWithGlobals())));
  }
  if (wants("config")) {
    const config = program.command("config").description("configuration tools");
    config
      .command("check")
      .description("validate every bot config; print problems as file:line: field: message")
      .option(JSON_HELP, "print {ok, problems: [{file, line, field, message}], bots: [...]}")
      .addHelpText(
        "after",
        "\nExit 0 when every file is valid, 2 otherwise.\n\nExamples:\n  bots config check\n  bots --config-dir /srv/bots/configs --env-file /srv/bots/.env config check\n  bots config check --json | jq -r '.problems[] | \"\\(.file):\\(.line): \\(.message)\"'",
      )
      .action(run(async (c) => (await import("./config.js")).checkCommand(c)));
  }
  if (wants("db")) {
    const db = program.command("db").description("database tools");
    db.command("migrate")
      .description("apply database migrations")
      .option(JSON_HELP, "print {database, applied: [...]}")
      .addHelpText(
        "after",
        "\nEvery command that opens the database applies pending migrations too; run this after an\nupgrade to do it at a chosen moment (stop the bots first).\n\nExamples:\n  bots db migrate\n  bots --db mysql://bots:secret@127.0.0.1:3306/bots db migrate",
      )
      .action(run(async (c) => (await import("./db.js")).migrateCommand(c)));
    db.command("copy")
      .description("copy every table of --db into another, empty database (SQLite → MySQL); stop the bots first")
      .option("--to <url>", "target database: mysql://user:pass@host:3306/db or sqlite:PATH")
      .option(JSON_HELP, "print {from, to, tables: [{table, rows}], rows}")
      .addHelpText(
        "after",
        "\nExamples:\n  bots db copy --to mysql://bots:secret@127.0.0.1:3306/bots\n  bots --db mysql://bots:secret@db:3306/bots db copy --to sqlite:backup.db",
      )
      .action(run(async (c, cmd) => (await import("./db.js")).copyCommand(c, cmd.opts())));
  }
  if (wants("poll")) {
    program
      .command("poll")
      .description("one pass over new 2GIS reviews under a database lease, for cron; exit 0 ok, 1 some failed, 2 usage/config")
      .argument("<channel>", "2gis")
      .argument("[bot...]", "2GIS bot names; none = every enabled 2GIS bot")
      .option("--lease-ttl <s>", "seconds a killed run's lease blocks others (renewed while running)", "120")
      .option(JSON_HELP, "print {bots: [...]}: one report per bot")
      .addHelpText(
        "after",
        "\nExamples:\n  bots poll 2gis\n  bots poll 2gis shop-2gis\n  */5 * * * * cd /srv/bots && /usr/local/bin/bots poll 2gis >> logs/cron.log 2>&1",
      )
      .action(run(async (c, cmd) => (await import("./poll.js")).pollCommand(c, cmd.args[0]!, cmd.args.slice(1), cmd.opts())));
  }
  if (wants("replay")) {
    program
      .command("replay")
      .description("re-run stored incoming messages through the current prompt and model (dry run unless --send)")
      .option("--bot <name...>", "bot names or channels (default: every enabled bot; with --id: every bot)")
      .option("--since <when>", "from: 30m, 24h, 2d or an ISO date (default 24h, none with --id)")
      .option("--until <when>", "up to (exclusive): 30m, 24h, 2d or an ISO date")
      .option("--id <n...>", "these stored message ids")
      .option(
        "--status <list>",
        "comma list of: received, failed, no_balance, expired, partial, answered, sending, delivering, unconfirmed, skipped, filtered (default: every status; with --send received, failed, no_balance, expired, partial)",
      )
      .option("--limit <n>", "at most N messages, oldest first")
      .option("--send", "deliver answers to never-answered messages, record and charge them")
      .option("--force", "with --send: also re-send messages that were answered")
      .option(JSON_HELP, "print one JSON object per message, then {summary}")
      .addHelpText(
        "after",
        [
          "",
          "Dry run (default) prints, per message, the user text, the stored answer and the new one with",
          "tokens and latency, then a summary. It writes nothing, sends nothing and charges nothing.",
          "--send answers messages with status received, failed or no_balance through the channel, in",
          "each conversation's order, and records and charges them; running it twice answers nothing twice.",
          "Ctrl-C stops after the current message. Exit 1 when a message failed.",
          "",
          "Examples:",
          "  bots replay --since 24h                       # what would the current prompt answer?",
          "  bots replay --bot shop-tg --status failed --json",
          "  bots replay --send --since 2d                 # answer what an outage left unanswered",
          "  bots replay --send --force --id 1042          # send message 1042 again",
        ].join("\n"),
      )
      .action(run(async (c, cmd) => (await import("./replay.js")).replayCommand(c, cmd.opts())));
  }
  if (wants("prompt")) {
    program
      .command("prompt")
      .description("prompt tools")
      .command("test")
      .description("one answer from a bot's prompt and model, with tokens, cost and latency; never sends or charges")
      .argument("<bot>", "bot name")
      .argument("[message...]", "the user's message")
      .option("--prompt <file>", "try another prompt file instead of the bot's")
      .option("-i, --interactive", "chat in the terminal (history kept; /reset, /exit)")
      .option("--cases <file>", "YAML list of cases with expectations; exit 1 if any fails")
      .option(
        "--image <file>",
        "send a local picture (JPEG, PNG, WebP, GIF) with the message, as a user would; repeatable",
        (v: string, prev: string[] = []) => [...prev, v],
      )
      .option("--voice <file>", "send a local audio file as a voice message: transcribed (llm.transcription), then answered")
      .option(JSON_HELP, "print the answer (or the cases) as JSON")
      .addHelpText(
        "after",
        [
          "",
          "Tool calls the model makes are shown, not executed. Nothing is written, delivered or charged;",
          "the cost shown is what a live reply would be charged (balance.cost_per_reply).",
          "",
          "Cases file (contains / not_contains are case-insensitive; matches is a regex, /re/i allowed):",
          "  - name: delivery price",
          "    message: Сколько стоит доставка?",
          "    contains: [доставк]",
          "    not_contains: [не знаю]",
          "    max_chars: 600",
          "  - history: [{user: Привет}, {assistant: Здравствуйте!}, {user: Вы работаете в субботу?}]",
          "    matches: /суббот/i",
          "  - image: fixtures/broken-kettle.jpg   # relative to the cases file; needs llm.vision.enabled",
          "    message: Можно вернуть?",
          "    contains: [возврат]",
          "",
          "Examples:",
          '  bots prompt test shop-tg "Сколько стоит доставка?"',
          '  bots prompt test shop-tg --prompt prompts/shop-v2.md "Есть самовывоз?"',
          "  bots prompt test shop-tg --interactive",
          '  bots prompt test shop-tg --image receipt.jpg "Что здесь не так?"',
          "  bots prompt test shop-tg --voice question.ogg",
          "  bots prompt test shop-tg --cases tests/shop-cases.yaml   # in CI before a prompt change",
        ].join("\n"),
      )
      .action(run(async (c, cmd) => (await import("./prompt.js")).promptTestCommand(c, cmd.args[0]!, cmd.args.slice(1), cmd.opts())));
  }
  if (wants("logs")) {
    program
      .command("logs")
      .description("log tools")
      .command("tail")
      .description("readable, coloured view of the JSON logs; -f follows")
      .argument("[bot]", "a bot's log (logs/BOT.log); default the process log (logs/bots.log)")
      .option("-f, --follow", "keep printing new lines, across rotation and new files, until Ctrl-C")
      .option("-n, --lines <n>", "last lines to show first", "50")
      .option("--level <level>", "lowest level shown: trace, debug, info, warn, error, fatal")
      .option("--since <when>", "only lines since: 10m, 2h, 1d or an ISO date")
      .option("--grep <text>", "only lines containing the text (case-insensitive)")
      .option(JSON_HELP, "pass the lines through as written (JSON lines)")
      .addHelpText(
        "after",
        [
          "",
          "Lines are shown as `time LEVEL bot thread message key=value`; --json passes them through as",
          "written. A line still being written is held back until complete; non-JSON lines are shown as",
          "they are (and hidden by --level / --since).",
          "",
          "Examples:",
          "  bots logs tail                         # last 50 lines of logs/bots.log",
          "  bots logs tail shop-tg -f              # follow one bot",
          "  bots logs tail --level warn --since 2h",
          "  bots logs tail shop-tg --grep tg:101 --json | jq .msg",
        ].join("\n"),
      )
      .action(run(async (c, cmd) => (await import("./logs.js")).logsTailCommand(c, cmd.args[0], cmd.opts())));
  }
  if (wants("init")) {
    program
      .command("init")
      .description("wizard that writes a new bot YAML and prompt file, then checks the configs")
      .option("--channel <channel>", "tg, vk or 2gis (default tg without a terminal)")
      .option("--name <name>", "bot name: configs/NAME.yaml and prompts/NAME.md")
      .option("--model <model>", "model name (default gpt-4o-mini)")
      .option("--api-key-var <VAR>", "variable holding the model API key (default OPENAI_API_KEY)")
      .option("--base-url <url>", "OpenAI-compatible endpoint (default the OpenAI API)")
      .option("--timezone <zone>", "IANA time zone of the bot (default this machine's)")
      .option("--token-var <VAR>", "tg/vk: variable holding the token (default NAME_TOKEN)")
      .option("--group-id <id>", "vk: the community id")
      .option("--confirmation-var <VAR>", "vk: variable with the Callback API confirmation (default NAME_CONFIRMATION)")
      .option("--secret-var <VAR>", "vk: variable with the Callback API secret (default NAME_SECRET)")
      .option("--login-var <VAR>", "2gis: variable with the cabinet login (default NAME_LOGIN)")
      .option("--password-var <VAR>", "2gis: variable with the cabinet password (default NAME_PASSWORD)")
      .option("--branch-id <id...>", "2gis: branch ids")
      .option("--account <name>", "balance account (default default)")
      .option("--cost <credits>", "credits per reply (default 5)")
      .option("--prompt-text <text>", "system prompt text for prompts/NAME.md")
      .option("-y, --yes", "ask nothing: take flags and defaults")
      .option("--force", "overwrite existing files")
      .option(JSON_HELP, "print what was written and the check as JSON")
      .addHelpText(
        "after",
        [
          "",
          "Writes configs/NAME.yaml and prompts/NAME.md (beside the config dir) and appends the variables",
          ".env does not mention yet, empty (--env-file to choose the file; a line already there is never",
          "changed). Existing config and prompt files are kept unless you confirm or pass --force. Then",
          "runs `bots config check` (variables not set yet are listed, not required).",
          "",
          "Examples:",
          "  bots init                                            # wizard",
          "  bots init --yes --channel tg --name shop-tg --cost 2.50 --prompt-text 'Ты помощник магазина.'",
          "  bots init --yes --channel vk --name shop-vk --group-id 123456",
          "  bots init --yes --channel 2gis --name shop-2gis --branch-id 70000001000000001",
        ].join("\n"),
      )
      .action(
        run(async (c, cmd) => (await import("./init.js")).initCommand(c, { ...cmd.opts(), envFile: cmd.optsWithGlobals<{ envFile?: string }>().envFile })),
      );
  }
  if (wants("report")) {
    program
      .command("report")
      .description("reports")
      .command("send")
      .description("build the HTML dialog report of a period and e-mail it (or write it with --out)")
      .option("--bot <name>", "one bot (default: every enabled bot with features.report)")
      .option("--since <duration>", "period ending now: 24h, 7d, 90m", "24h")
      .option("--to <addr>", "recipients, comma-separated (default: report.to)")
      .option("--out <file>", "write the HTML to this file instead of mailing it")
      .option(JSON_HELP, "print a summary per report as JSON")
      .addHelpText(
        "after",
        "\nExamples:\n  bots report send                          # every bot with features.report, last 24 h\n  bots report send --bot shop-tg --since 7d --to boss@example.com\n  bots report send --bot shop-tg --out report.html",
      )
      .action(run(async (c, cmd) => (await import("./report.js")).reportSendCommand(c, cmd.opts())));
  }
  if (wants("coaching")) {
    program
      .command("coaching")
      .description("coaching bots (features.coaching)")
      .command("stats <bot>")
      .description("users, check-ins, streaks, reminders and cost per active user of the last 7 days")
      .option(JSON_HELP, "print the figures as JSON")
      .addHelpText("after", "\nExamples:\n  bots coaching stats coach-tg\n  bots coaching stats coach-tg --json")
      .action(run(async (c, cmd) => (await import("./coaching.js")).coachingStatsCommand(c, cmd.args[0]!)));
  }
  if (wants("dialogs")) {
    program
      .command("dialogs")
      .description("list conversations, or print one as a chat (times in the bot's timezone)")
      .argument("[bot]", "a bot (default: every bot)")
      .argument("[thread_key]", "a conversation, e.g. tg:42 (see the list)")
      .option("--user <id>", "the conversations of this user id (Bot API user id, VK from_id)")
      .option("--since <when>", "only messages since: 30m, 24h, 2d or an ISO date")
      .option("--grep <text>", "only messages containing the text")
      .option("--status <list>", "only messages with these statuses, comma-separated: failed, answered, no_balance, ...")
      .option("--limit <n>", "conversations per page (50), or messages of a thread (the newest 500)")
      .option("--before <cursor>", "the next page of conversations (printed under a full page)")
      .option("--no-pager", "never page the output through $PAGER")
      .option(JSON_HELP, "print the list, or the conversation's messages, as JSON")
      .addHelpText(
        "after",
        [
          "",
          "Examples:",
          "  bots dialogs                               # newest conversations of every bot",
          "  bots dialogs shop-tg --status failed --since 24h",
          "  bots dialogs shop-tg tg:42                 # one conversation as a chat",
          "  bots dialogs shop-tg --user 42 --grep доставк",
          "  bots dialogs shop-tg tg:42 --json | jq -r '.[] | .text'",
        ].join("\n"),
      )
      .action(run(async (c, cmd) => (await import("./dialogs.js")).dialogsCommand(c, cmd.args[0], cmd.args[1], cmd.opts())));
  }
  if (wants("status")) {
    program
      .command("status")
      .description("bots, balances and today's messages")
      .option("-w, --watch", "redraw every 2 s on a terminal until Ctrl-C")
      .option(JSON_HELP, "print {bots, accounts, problems, instances, owners}")
      .addHelpText(
        "after",
        [
          "",
          "Shows every bot file in the config dir: channel, enabled flag, today's messages (since",
          "midnight in the bot's timezone: in, answered, failed, no balance) and the last message time;",
          "a file with a config problem is listed with its problem. Then each balance account with how",
          "many replies it still pays for.",
          "",
          "Examples:",
          "  bots status",
          "  bots status --watch",
          "  bots status --json | jq '.accounts[] | select(.replies_left < 100)'",
        ].join("\n"),
      )
      .action(run(async (c, cmd) => (await import("./status.js")).statusCommand(c, cmd.opts())));
  }

  return program;
}

/**
 * Prints an error as one line (plus a hint) and converts it to an {@link ExitError}: 2 for
 * usage and configuration errors, 1 for everything else.
 */
export async function reportError(error: unknown, c: Pick<CliContext, "err" | "json" | "verbose">): Promise<ExitError> {
  if (error instanceof ExitError) return error;
  const { default: chalk } = await import("chalk");
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
 * `bots balance adjust -- -10 --account A`: the habit of `--` before a negative number would
 * make commander read the options after it as arguments too. A negative number needs no `--`
 * (commander takes `-10` as the amount), so the `--` right after `adjust` is dropped.
 */
function signedAmountAfterDashes(argv: string[]): string[] {
  const i = argv.indexOf("adjust");
  if (i < 1 || argv[i - 1] !== "balance" || argv[i + 1] !== "--" || !/^[-+]?\d/.test(argv[i + 2] ?? "")) return argv;
  return [...argv.slice(0, i + 1), ...argv.slice(i + 2)];
}

/**
 * Runs the program on `argv` (without node and script) and returns the exit code instead of
 * exiting: 0 ok, 1 runtime failure, 2 usage or configuration error.
 */
export async function runCli(argv: string[], io?: CliIo): Promise<number> {
  try {
    return await runProgram(argv, io);
  } finally {
    // Whatever path a command took (done, thrown, exit code), its log lines are in the files
    // before the caller exits.
    await flushAllLogs();
  }
}

async function runProgram(argv: string[], io?: CliIo): Promise<number> {
  const only = commandOf(argv);
  // A failed import fails again, and is reported, where the action imports the module.
  if (only && !argv.includes("-h") && !argv.includes("--help")) for (const load of [() => import("./context.js"), MODULES[only]]) load().catch(() => undefined);
  const program = buildProgram(io, only);
  try {
    await program.parseAsync(signedAmountAfterDashes(argv), { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof ExitError) return error.exitCode;
    if (error instanceof CommanderError) {
      if (error.code === "bots.noCommand") return EXIT_NO_COMMAND;
      if (error.code === "commander.helpDisplayed" || error.code === "commander.version" || error.code === "commander.help") return 0;
      return error.exitCode === 0 ? 0 : 2;
    }
    const e = await reportError(error, {
      err: (l) => void (io?.stderr ?? process.stderr).write(`${l}\n`),
      json: false,
      verbose: argv.includes("-v") || argv.includes("--verbose"),
    });
    return e.exitCode;
  }
}
