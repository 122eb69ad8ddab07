import chalk from "chalk";
import type { BotConfig } from "../config/schema.js";
import { Pipeline } from "../core/pipeline.js";
import { processHolder } from "../core/recovery.js";
import { describeError, ExitError, UsageError } from "../errors.js";
import { buildFeatures } from "../features/index.js";
import { createLogging } from "../logging.js";
import { llmFor, notifierFor, secretsOf, selectBots } from "../runner.js";
import { passWithLease } from "../poll-2gis.js";
import { openStore } from "../storage/index.js";
import type { CliContext } from "./context.js";
import { loadBots, loadBotsWarn } from "./configs.js";
import { formatTime } from "./shared.js";

/** Options of `bots poll`. */
export interface PollCommandOptions {
  /** Seconds a lease lasts without renewal (renewed every third while the pass runs). */
  leaseTtl: string;
}

/** One bot's line in `--json` output. */
interface BotReport {
  bot: string;
  status: "done" | "busy" | "error";
  answered: number;
  skipped: number;
  failed: number;
  deferred: number;
  failures: Array<{ branch_id: string; review_id: string | null; message_id: number | null; kind: string; reason: string }>;
  lease_holder?: string;
  lease_expires_at?: string;
  error?: string;
}

/**
 * `bots poll 2gis [BOT...]`: one pass over every enabled 2GIS bot (or the named ones), each under
 * its database lease `poll:2gis:<bot>`, then exit: 0 all good (also when another run holds a
 * bot's lease: one notice line), 1 when any review could not be answered (each listed on
 * stderr), 2 for bad usage or config. Quiet when there is nothing new; otherwise one summary line
 * per bot on stdout (`shop-2gis: 3 answered, 1 skipped, 0 failed`); progress on a TTY. `--json`
 * prints `{bots: [...]}` on stdout instead.
 * @throws UsageError (exit 2) for a channel other than 2gis, an unknown or non-2GIS bot, a bad
 *   `--lease-ttl`; ConfigError (exit 2) for bad configs; ExitError(1) after listing failures
 */
export async function pollCommand(c: CliContext, channel: string, names: string[], opts: PollCommandOptions): Promise<void> {
  if (channel !== "2gis")
    throw new UsageError("POLL_CHANNEL", `'bots poll ${channel}': only 2gis is polled`, {
      hint: "bots poll 2gis [BOT...]; Telegram and VK run with bots start",
    });
  const ttlS = Number(opts.leaseTtl);
  if (!Number.isFinite(ttlS) || ttlS < 1 || ttlS > 86_400)
    throw new UsageError("LEASE_TTL_INVALID", `--lease-ttl must be seconds from 1 to 86400, got '${opts.leaseTtl}'`);
  // Bots named here must be valid, other files' problems are one warning line. Without names
  // the pass is for every 2GIS bot, so any broken file stops it (cron mails the exit 2).
  const all = names.length ? loadBotsWarn(c, names) : loadBots(c);
  const bots = selectBots(all, names.length ? names : ["2gis"]);
  const wrong = bots.filter((b) => b.channel !== "2gis");
  if (wrong.length)
    throw new UsageError(
      "POLL_NOT_2GIS",
      `${wrong.map((b) => `${b.name} (${b.channel})`).join(", ")} ${wrong.length === 1 ? "is not a 2GIS bot" : "are not 2GIS bots"}`,
      { hint: "name 2GIS bots only, or none for all of them" },
    );

  const logging = createLogging({ logDir: c.logDir, level: c.verbose ? "debug" : "info", console: c.verbose, color: c.color, secrets: secretsOf(bots) });
  const store = await openStore(c.dbUrl);
  const reports: BotReport[] = [];
  const progress = c.interactive && !c.json;
  try {
    for (const bot of bots) reports.push(await pollBot(c, bot, store, logging, ttlS * 1000, progress));
  } finally {
    await store.close();
    await logging.flush();
  }

  if (c.json) c.out(JSON.stringify({ bots: reports }));
  else for (const r of reports) printReport(c, r, bots.find((b) => b.name === r.bot)?.timezone);
  if (reports.some((r) => r.status === "error" || r.failed > 0)) throw new ExitError(1);
}

async function pollBot(
  c: CliContext,
  bot: BotConfig,
  store: Awaited<ReturnType<typeof openStore>>,
  logging: ReturnType<typeof createLogging>,
  leaseTtlMs: number,
  progress: boolean,
): Promise<BotReport> {
  const report: BotReport = { bot: bot.name, status: "done", answered: 0, skipped: 0, failed: 0, deferred: 0, failures: [] };
  const logger = logging.forBot(bot.name);
  const { TwoGisWorker } = await import("../channels/twogis/worker.js");
  const worker = await TwoGisWorker.create(bot, logger, { store, leaseTtlMs });
  const notifier = notifierFor(bot, logger);
  const features = buildFeatures(bot, { store, logger, now: Date.now, env: c.env });
  const pipeline = new Pipeline({ bot, store, llm: llmFor(bot, logger), channel: worker, logger, notifier, features });
  let shown = "";
  try {
    const outcome = await passWithLease(worker, pipeline, logger, processHolder(), (p) => {
      const line = `${bot.name}: ${p.done}/${p.total} reviews done…`;
      if (!progress || p.total === 0 || line === shown) return;
      shown = line;
      // Progress goes to the terminal only (c.interactive); cron output stays clean.
      process.stderr.write(`\r${line}`);
    });
    if (outcome.status === "busy") {
      report.status = "busy";
      report.lease_holder = outcome.lease?.holder;
      report.lease_expires_at = outcome.lease ? new Date(outcome.lease.expires_ms).toISOString() : undefined;
      return report;
    }
    const r = outcome.result;
    report.answered = r.answered;
    report.skipped = r.skipped;
    report.deferred = r.deferred;
    report.failed = r.failed.length;
    report.failures = r.failed.map((f) => ({ branch_id: f.branchId, review_id: f.reviewId, message_id: f.messageId, kind: f.kind, reason: f.reason }));
    return report;
  } catch (error) {
    logger.error({ err: error }, "2GIS pass failed");
    report.status = "error";
    report.failed = 1;
    report.error = describeError(error);
    const hint = (error as { hint?: string }).hint;
    if (hint) report.error += ` (${hint})`;
    return report;
  } finally {
    if (shown) process.stderr.write("\r\x1b[K");
    // Answers in flight were awaited by the pass; anything left stays stored for the next run.
    await pipeline.drain(1000);
    await notifier?.close();
  }
}

function printReport(c: CliContext, r: BotReport, timeZone?: string): void {
  if (r.status === "busy") {
    c.err(
      `${r.bot}: another poll is running (lease held by ${r.lease_holder ?? "?"}${r.lease_expires_at ? ` until ${formatTime(Date.parse(r.lease_expires_at), timeZone)}` : ""}); skipped this time`,
    );
    return;
  }
  if (r.status === "error") {
    c.err(`${chalk.red("error:")} ${r.bot}: ${r.error}`);
    return;
  }
  if (r.answered + r.skipped + r.failed === 0) return; // nothing new: stay quiet for cron
  const failed = r.failed ? chalk.red(`${r.failed} failed`) : `${r.failed} failed`;
  c.out(`${r.bot}: ${r.answered} answered, ${r.skipped} skipped, ${failed}${r.deferred ? `, ${r.deferred} left for the next run` : ""}`);
  const noBalance = r.failures.filter((f) => f.kind === "no_balance");
  for (const f of r.failures.filter((f) => f.kind !== "no_balance")) {
    c.err(
      `${r.bot}: ${f.review_id === null ? `branch ${f.branch_id}` : `review ${f.review_id} (branch ${f.branch_id}${f.message_id !== null ? `, message ${f.message_id}` : ""})`}: ${f.reason}`,
    );
  }
  if (noBalance.length) {
    c.err(
      `${r.bot}: ${r.answered === 0 ? "nothing answered: " : ""}the balance cannot pay for ${noBalance.length} answer${noBalance.length === 1 ? "" : "s"} (${noBalance[0]!.reason}); they are answered on the next run after a top-up: bots balance add AMOUNT`,
    );
  }
}
