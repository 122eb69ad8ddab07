import chalk from "chalk";
import { formatProblem, loadBotConfigs } from "../config/load.js";
import { describeRecovery } from "../core/recovery.js";
import { collectScale, DEFAULT_LEASE_TTL_MS } from "../core/ownership.js";
import { collectStatus } from "../core/status.js";
import { formatCredits } from "../storage/balance.js";
import type { CliContext } from "./context.js";
import { formatTime, table, withStore } from "./shared.js";

/**
 * `bots status`: the bots found in the config dir (channel, enabled), today's messages per bot
 * (since midnight UTC: in / answered / failed / no balance), the last message time, and each
 * account's balance with the replies it still pays for. Configs with problems are listed too
 * (and counted in `problems` with `--json`) without failing the command.
 */
export async function statusCommand(c: CliContext): Promise<void> {
  const { bots, problems } = loadBotConfigs(c.configDir, c.env);
  const [report, scale] = await withStore(c, async (store) => [await collectStatus(bots, store, Date.now()), await collectScale(store)] as const);
  if (c.json) {
    c.out(
      JSON.stringify({
        day_start: new Date(report.day_start_ms).toISOString(),
        bots: report.bots.map((b) => ({
          ...b,
          last_message_at: b.last_message_ms === null ? null : new Date(b.last_message_ms).toISOString(),
          last_recovery: b.last_recovery && { ...b.last_recovery, at: new Date(b.last_recovery.at_ms).toISOString() },
        })),
        accounts: report.accounts.map((a) => ({ account: a.account, balance: formatCredits(a.balance), balance_hundredths: a.balance, replies_left: a.replies_left })),
        problems: problems.map(formatProblem),
        instances: scale.instances,
        owners: scale.owners,
      }),
    );
    return;
  }
  if (!report.bots.length) c.out(`No bots in ${c.configDir}.`);
  else {
    c.out(chalk.bold(`Bots (messages today since ${formatTime(report.day_start_ms)})`));
    c.out(
      table(
        ["BOT", "CHANNEL", "ENABLED", "ACCOUNT", "IN", "ANSWERED", "FAILED", "NO BALANCE", "LAST MESSAGE"],
        report.bots.map((b) => [b.name, b.channel, b.enabled ? chalk.green("yes") : chalk.dim("no"), b.account, String(b.in), String(b.answered), b.failed ? chalk.red(String(b.failed)) : "0", b.no_balance ? chalk.yellow(String(b.no_balance)) : "0", b.last_message_ms === null ? "-" : formatTime(b.last_message_ms)]),
      ),
    );
  }
  if (report.bots.length) {
    c.out("");
    c.out(chalk.bold("Open messages (any age) and the last recovery at start"));
    const warn = (n: number, paint: (s: string) => string) => (n ? paint(String(n)) : "0");
    c.out(
      table(
        ["BOT", "WAITING", "UNCONFIRMED", "FAILED", "EXPIRED", "LAST RECOVERY"],
        report.bots.map((b) => [
          b.name,
          String(b.waiting),
          warn(b.unconfirmed, chalk.yellow),
          warn(b.failed_total, chalk.red),
          warn(b.expired, chalk.yellow),
          b.last_recovery ? `${formatTime(b.last_recovery.at_ms)}: ${describeRecovery(b.last_recovery)}` : "-",
        ]),
      ),
    );
  }
  if (scale.instances.length || scale.owners.length) {
    c.out("");
    c.out(chalk.bold(`Instances (dead after ${DEFAULT_LEASE_TTL_MS / 1000} s without a heartbeat) and bot owners`));
    c.out(table(["INSTANCE", "HOST", "PID", "HEARTBEAT AGE", "BOTS OWNED"], scale.instances.map((i) => [i.id, i.host, String(i.pid), i.alive ? `${(i.heartbeat_age_ms / 1000).toFixed(1)} s` : chalk.red(`${(i.heartbeat_age_ms / 1000).toFixed(1)} s (dead)`), i.bots_owned.join(", ") || "-"])));
    c.out(table(["BOT", "OWNER", "EPOCH"], scale.owners.map((o) => [o.bot, o.owner ?? chalk.yellow("(none)"), String(o.epoch)])));
  }
  c.out("");
  if (!report.accounts.length) c.out("No balance accounts yet. Top one up with: bots balance add 500");
  else c.out(table(["ACCOUNT", "BALANCE", "REPLIES LEFT"], report.accounts.map((a) => [a.account, chalk.bold(formatCredits(a.balance)), a.replies_left === null ? "-" : String(a.replies_left)])));
  if (problems.length) {
    c.out("");
    c.out(chalk.red(`${problems.length} config problem${problems.length === 1 ? "" : "s"} (run bots config check):`));
    for (const p of problems) c.out(`  ${formatProblem(p)}`);
  }
  const unconfirmed = report.bots.reduce((a, b) => a + b.unconfirmed, 0);
  if (unconfirmed) c.out(chalk.yellow(`\n${unconfirmed} answer(s) unconfirmed (cut off between sending and recording): check them with bots replay --status unconfirmed`));
  const failed = report.bots.reduce((a, b) => a + b.failed + b.no_balance, 0);
  if (failed) c.out(chalk.yellow(`\n${failed} message(s) unanswered today: bots replay --send --since ${Math.max(1, Math.ceil((Date.now() - report.day_start_ms) / 3_600_000))}h`));
}
