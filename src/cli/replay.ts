import chalk from "chalk";
import { channelFactory } from "../channels/index.js";
import type { BotConfig } from "../config/schema.js";
import { Pipeline } from "../core/pipeline.js";
import { replay, type ReplayResult, type ReplaySummary } from "../core/replay.js";
import { ExitError, UsageError } from "../errors.js";
import { buildFeatures } from "../features/index.js";
import { createLogging } from "../logging.js";
import { WebSocketNotifier } from "../notify/websocket.js";
import { audioFetcherFor, imageFetcherFor } from "../channels/files.js";
import { llmFor, secretsOf, selectBots } from "../runner.js";
import type { IncomingStatus } from "../storage/schema.js";
import type { CliContext } from "./context.js";
import { QuitSwitch } from "./quit.js";
import { loadBotsWarn } from "./configs.js";
import { formatTime, withStore } from "./shared.js";
import { parseCount, parseWhen } from "./time.js";

/** Options of `bots replay` as commander parses them. */
export interface ReplayCliOptions {
  bot?: string[];
  since?: string;
  until?: string;
  id?: string[];
  status?: string;
  limit?: string;
  send?: boolean;
  force?: boolean;
}

const STATUSES: IncomingStatus[] = [
  "received",
  "failed",
  "no_balance",
  "expired",
  "partial",
  "answered",
  "sending",
  "delivering",
  "unconfirmed",
  "skipped",
  "filtered",
];

/**
 * `bots replay`: parses the selection, runs {@link replay} (dry run unless `--send`), prints each
 * message (or one JSON object per line with `--json`, then `{"summary": …}`), a progress line on
 * a TTY, and a summary. Ctrl-C stops after the current message. Exit 1 when any message failed.
 * @throws UsageError (exit 2) for bad options, ConfigError (exit 2) for bad configs
 */
export async function replayCommand(c: CliContext, opts: ReplayCliOptions): Promise<void> {
  const now = Date.now();
  const ids = opts.id
    ?.flatMap((s) => s.split(","))
    .filter(Boolean)
    .map((s) => parseCount(s, "--id", 1, Number.MAX_SAFE_INTEGER));
  const sinceMs = opts.since !== undefined ? parseWhen(opts.since, now, "--since") : ids ? undefined : now - 86_400_000;
  const untilMs = opts.until !== undefined ? parseWhen(opts.until, now, "--until") : undefined;
  const limit = opts.limit !== undefined ? parseCount(opts.limit, "--limit", 1, 1_000_000) : undefined;
  let statuses: IncomingStatus[] | undefined;
  if (opts.status) {
    statuses = opts.status
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean) as IncomingStatus[];
    const bad = statuses.filter((s) => !STATUSES.includes(s));
    if (bad.length)
      throw new UsageError("STATUS_INVALID", `unknown status ${bad.map((s) => `'${s}'`).join(", ")}`, { hint: `one or more of ${STATUSES.join(", ")}` });
  }
  if (opts.force && !opts.send)
    throw new UsageError("FORCE_WITHOUT_SEND", "--force only makes sense with --send", { hint: "bots replay --send --force --id N" });
  const targets = opts.bot?.flatMap((s) => s.split(",")).filter(Boolean) ?? [];
  // Bots named here must be valid; other files' problems are one warning line.
  const all = loadBotsWarn(c, targets);
  const bots: BotConfig[] = targets.length ? selectBots(all, targets) : ids ? all : selectBots(all, []);

  const logging = createLogging({ logDir: c.logDir, level: c.verbose ? "debug" : "info", console: c.verbose, color: c.color, secrets: secretsOf(bots) });
  const ac = new AbortController();
  const quitSwitch = new QuitSwitch();
  const onSigint = () => {
    if (!ac.signal.aborted) c.err(chalk.yellow("Stopping after the current message (Ctrl-C again to quit at once)…"));
    else {
      logging.flushSync();
      quitSwitch.quit(130);
    }
    ac.abort();
  };
  process.on("SIGINT", onSigint);
  const progress = c.interactive && !c.json;
  const notifiers: WebSocketNotifier[] = [];
  let summary: ReplaySummary;
  try {
    summary = await quitSwitch.race(
      withStore(c, (store) =>
        replay(
          {
            bots,
            store,
            llmFor: (bot) => llmFor(bot, logging.forBot(bot.name)),
            featuresFor: (bot) => buildFeatures(bot, { store, logger: logging.forBot(bot.name), now: Date.now, env: c.env }),
            imagesFor: (bot) => imageFetcherFor(bot),
            loggerFor: (bot) => logging.forBot(bot.name),
            pipelineFor: async (bot) => {
              const logger = logging.forBot(bot.name);
              // The worker is only a sender here: it is never started, so nothing is received.
              const channel = await channelFactory(bot.channel)(bot, logger, { store });
              const notifier = bot.websocket
                ? new WebSocketNotifier({ url: bot.websocket.url, token: bot.websocket.token, maxQueue: bot.websocket.max_queue, logger })
                : undefined;
              if (notifier) notifiers.push(notifier);
              return new Pipeline({
                bot,
                store,
                llm: llmFor(bot, logger),
                channel,
                logger,
                notifier,
                features: buildFeatures(bot, { store, logger, now: Date.now, env: c.env }),
                images: imageFetcherFor(bot),
                audio: audioFetcherFor(bot),
              });
            },
            signal: ac.signal,
            onResult: (r, done, total) => {
              if (progress) process.stderr.write("\r\u001b[2K");
              printResult(c, r, Boolean(opts.send), all.find((b) => b.name === r.bot)?.timezone);
              if (progress && done < total) process.stderr.write(progressBar(done, total));
            },
          },
          { bots: bots.map((b) => b.name), ids, statuses, sinceMs, untilMs, limit },
          { send: opts.send, force: opts.force },
        ),
      ),
    );
  } finally {
    process.off("SIGINT", onSigint);
    // Quit at once: no waiting for notifiers (the logs were flushed by the handler).
    if (!quitSwitch.fired) {
      await Promise.all(notifiers.map((n) => n.close()));
      await logging.flush();
    }
  }
  printSummary(c, summary, Boolean(opts.send));
  if (summary.results.some((r) => r.outcome === "failed" || r.outcome === "error")) throw new ExitError(1);
}

function progressBar(done: number, total: number): string {
  const width = 24;
  const full = Math.round((done / total) * width);
  return `${chalk.cyan(`[${"#".repeat(full)}${" ".repeat(width - full)}]`)} ${done}/${total}`;
}

/** One replayed message; its time in its bot's `timezone` (UTC for a bot no config names). */
function printResult(c: CliContext, r: ReplayResult, send: boolean, timeZone = "UTC"): void {
  if (c.json) {
    c.out(JSON.stringify({ ...r, created_at: new Date(r.created_ms).toISOString() }));
    return;
  }
  const outcome =
    r.outcome === "answered"
      ? chalk.green("sent")
      : r.outcome === "dry_run"
        ? r.changed
          ? chalk.yellow("changed")
          : chalk.dim("same")
        : r.outcome === "skipped"
          ? chalk.dim("skipped")
          : chalk.red(r.outcome);
  c.out(`${chalk.bold(`#${r.id}`)} ${chalk.cyan(r.bot)} ${chalk.magenta(r.thread_key)} ${formatTime(r.created_ms, timeZone)} [${r.status}] → ${outcome}`);
  c.out(`  ${chalk.dim("user:  ")} ${indent(r.text)}`);
  c.out(`  ${chalk.dim("stored:")} ${r.stored_answer === null ? chalk.dim("(none)") : indent(r.stored_answer)}`);
  if (r.new_answer !== null) c.out(`  ${chalk.dim(send ? "sent:  " : "new:   ")} ${indent(r.new_answer)}`);
  for (const t of r.tool_calls) c.out(`  ${chalk.dim("tool:  ")} ${t.name}(${t.arguments})${send ? "" : chalk.dim(" not executed")}`);
  if (r.prompt_tokens !== null) c.out(chalk.dim(`  tokens ${r.prompt_tokens} prompt + ${r.completion_tokens} completion, ${r.latency_ms} ms`));
  if (r.error) c.out(`  ${r.outcome === "skipped" ? chalk.dim(r.error) : chalk.red(r.error)}`);
}

function indent(text: string): string {
  return text.replace(/\n/g, "\n           ");
}

function printSummary(c: CliContext, s: ReplaySummary, send: boolean): void {
  const errors = s.results.filter((r) => r.outcome === "error" || r.outcome === "failed").length;
  if (c.json) {
    c.out(
      JSON.stringify({
        summary: {
          mode: send ? "send" : "dry_run",
          selected: s.selected,
          processed: s.processed,
          changed: s.changed,
          answered: s.answered,
          failed: s.failed,
          skipped: s.skipped,
          interrupted: s.interrupted,
        },
      }),
    );
    return;
  }
  if (s.selected === 0) {
    c.out(send ? "Nothing to send: no unanswered messages match." : "No stored messages match.");
    return;
  }
  const stop = s.interrupted ? chalk.yellow(` Interrupted after ${s.processed} of ${s.selected}.`) : "";
  if (send) c.out(`${chalk.bold("Sent")}: ${s.answered} answered, ${s.failed} not answered, ${s.skipped} skipped of ${s.selected}.${stop}`);
  else c.out(`${chalk.bold("Dry run")}: ${s.processed} replayed, ${s.changed} changed, ${errors} errors. Nothing was written, sent or charged.${stop}`);
}
