import { createWriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { BotConfig } from "../config/schema.js";
import { ConfigError, UsageError } from "../errors.js";
import { isEmail } from "../features/leads.js";
import { mailReport, parseDuration, renderReport } from "../features/report.js";
import { Mailer, type MailerOptions } from "../notify/email.js";
import { selectBots } from "../runner.js";
import { DialogsRepo } from "../storage/dialogs.js";
import type { CliContext } from "./context.js";
import { loadBotsWarn } from "./configs.js";
import { formatTime, withStore } from "./shared.js";

/** Options of `bots report send`. */
export interface ReportSendOptions {
  bot?: string;
  /** Period ending now, e.g. `24h`. */
  since: string;
  /** Recipients, comma-separated; overrides `report.to`. */
  to?: string;
  /** Write the HTML here instead of mailing it. */
  out?: string;
}

/**
 * `bots report send [--bot B] [--since 24h] [--to ADDR] [--out FILE]`: builds the HTML dialog
 * report of each selected bot (`--bot`, else every enabled bot with `features.report`) for the
 * period ending now, and e-mails it over the bot's `smtp:` (to `--to` or `report.to`), or writes
 * it to `--out` (with several bots, `-<bot>` is added before the extension).
 * @throws UsageError (exit 2) for a bad duration, address or selection; ConfigError (exit 2)
 * when a bot has no smtp section; MailError (exit 1) when the mail server refuses after retries
 */
export async function reportSendCommand(c: CliContext, opts: ReportSendOptions, deps: { now?: () => number; mail?: MailerOptions } = {}): Promise<void> {
  const periodMs = parseDuration(opts.since);
  // The bot named here must be valid; other files' problems are one warning line.
  const all = loadBotsWarn(c, opts.bot ? [opts.bot] : []);
  let bots: BotConfig[];
  if (opts.bot) bots = selectBots(all, [opts.bot]);
  else {
    bots = all.filter((b) => b.enabled && b.features.report);
    if (!bots.length)
      throw new UsageError("NO_REPORT_BOTS", "no enabled bot has features.report", { hint: "pass --bot NAME, or add features.report to a bot's config" });
  }
  const to = opts.to
    ?.split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const addr of to ?? []) if (!isEmail(addr)) throw new UsageError("ADDRESS_INVALID", `--to: '${addr}' is not an e-mail address`);
  if (!opts.out) {
    for (const b of bots) {
      if (!b.smtp)
        throw new ConfigError("SMTP_MISSING", `bot ${b.name} has no smtp section to send the report with`, {
          hint: "add smtp: to its config (see docs/sales.md), or use --out FILE",
        });
      if (!(to ?? b.features.report?.to)?.length) throw new UsageError("NO_RECIPIENT", `bot ${b.name} has no report.to`, { hint: "pass --to ADDR" });
    }
  }
  const untilMs = (deps.now ?? Date.now)();
  const sinceMs = untilMs - periodMs;
  await withStore(c, async (store) => {
    for (const bot of bots) {
      const counts = await new DialogsRepo(store.database.db).counts(bot.name, sinceMs, untilMs);
      const leads = (await store.leads.createdBetween(bot.name, sinceMs, untilMs)).length;
      const summary = {
        bot: bot.name,
        since: new Date(sinceMs).toISOString(),
        until: new Date(untilMs).toISOString(),
        dialogs: counts.dialogs,
        messages: counts.messages,
        answered: counts.answered,
        failed: counts.failed,
        leads,
      };
      if (opts.out) {
        const file = path.resolve(bots.length > 1 ? opts.out.replace(/(\.[^./\\]+)?$/, (ext) => `-${bot.name}${ext}`) : opts.out);
        await mkdir(path.dirname(file), { recursive: true });
        await pipeline(Readable.from(renderReport(store, bot, { sinceMs, untilMs })), createWriteStream(file));
        if (c.json) c.out(JSON.stringify({ ...summary, out: file }));
        else
          c.out(
            `${bot.name}: ${counts.dialogs} dialogs, ${counts.messages} messages, ${leads} leads (${formatTime(sinceMs, bot.timezone)} – ${formatTime(untilMs, bot.timezone)}) → ${file}`,
          );
        continue;
      }
      const recipients = to ?? bot.features.report!.to;
      const mailer = new Mailer(bot.smtp!, deps.mail);
      try {
        const id = await mailReport(store, bot, mailer, {
          sinceMs,
          untilMs,
          to: recipients,
          subject: bot.features.report?.subject ?? "Диалоги {bot}: {from} — {to}",
          backoffMs: deps.mail?.backoffMs ?? 2000,
        });
        if (c.json) c.out(JSON.stringify({ ...summary, to: recipients, message_id: id }));
        else
          c.out(
            `${bot.name}: ${counts.dialogs} dialogs, ${counts.messages} messages, ${leads} leads (${formatTime(sinceMs, bot.timezone)} – ${formatTime(untilMs, bot.timezone)}) → ${recipients.join(", ")}`,
          );
      } finally {
        mailer.close();
      }
    }
  });
}
