import path from "node:path";
import chalk from "chalk";
import { displayPath, formatProblem, loadBotConfigs, type LoadedConfigs } from "../config/load.js";
import { describeRecovery } from "../core/recovery.js";
import { sleep } from "../lib/retry.js";
import { collectScale, type ScaleStatus } from "../core/ownership.js";
import { collectStatus, type BotStatus, type BrokenBot, type StatusReport } from "../core/status.js";
import { formatCredits } from "../storage/balance.js";
import { terminalSafe } from "../terminal.js";
import type { CliContext } from "./context.js";
import { formatTime, table, withStoreOrEmpty } from "./shared.js";

/**
 * The columns of the bots table, in order. A column is a header and a cell for a loaded bot;
 * files with problems show `-` in every column but the first ones. Add a column here and it
 * appears in the table (`--json` prints every {@link BotStatus} field anyway).
 */
export const STATUS_COLUMNS: Array<{ header: string; cell: (b: BotStatus) => string }> = [
  { header: "CHANNEL", cell: (b) => b.channel },
  { header: "ENABLED", cell: (b) => (b.enabled ? chalk.green("yes") : chalk.dim("no")) },
  { header: "ACCOUNT", cell: (b) => terminalSafe(b.account) },
  { header: "IN", cell: (b) => String(b.in) },
  { header: "ANSWERED", cell: (b) => String(b.answered) },
  { header: "FAILED", cell: (b) => (b.failed ? chalk.red(String(b.failed)) : "0") },
  { header: "NO BALANCE", cell: (b) => (b.no_balance ? chalk.yellow(String(b.no_balance)) : "0") },
  { header: "LAST MESSAGE", cell: (b) => (b.last_message_ms === null ? "-" : formatTime(b.last_message_ms, b.timezone)) },
];

/**
 * The bot files of a loaded config dir that did not become bots, each with its problems. A
 * problem that names no bot file (the folder is missing) is left out.
 */
export function brokenBots(loaded: LoadedConfigs): BrokenBot[] {
  const ok = new Set(loaded.bots.map((b) => path.resolve(b.file)));
  return loaded.files
    .filter((f) => !ok.has(path.resolve(f)))
    .map((f) => {
      const shown = displayPath(f);
      return { name: path.basename(f).replace(/\.ya?ml$/, ""), file: shown, problems: loaded.problems.filter((p) => p.file === shown).map(formatProblem) };
    });
}

/**
 * `bots status [--watch]`: every bot file in the config dir, including disabled bots and files
 * with config problems (each shows its first problem), today's messages per bot (since midnight
 * in the bot's `timezone`: in / answered / failed / no balance), the last message time, and each
 * account's balance with the replies it still pays for. `--watch` redraws every 2 s on a
 * terminal until Ctrl-C.
 */
export async function statusCommand(c: CliContext, opts: { watch?: boolean; interval?: number } = {}): Promise<void> {
  if (!opts.watch) return void (await statusOnce(c));
  if (!c.interactive || c.json) {
    await statusOnce(c);
    return;
  }
  const stop = new AbortController();
  const onSigint = () => stop.abort();
  process.once("SIGINT", onSigint);
  try {
    while (!stop.signal.aborted) {
      const lines: string[] = [];
      await statusOnce({ ...c, out: (l) => void lines.push(l) });
      // Clear the screen and home the cursor, then draw the whole report at once.
      c.out(`\u001b[2J\u001b[H${chalk.dim(`bots status --watch · ${new Date().toISOString().slice(11, 19)} UTC · Ctrl-C to stop`)}\n${lines.join("\n")}`);
      await sleep(opts.interval ?? 2000, stop.signal);
    }
  } finally {
    process.off("SIGINT", onSigint);
  }
}

async function statusOnce(c: CliContext): Promise<StatusReport> {
  const loaded = loadBotConfigs(c.configDir, c.env);
  const broken = brokenBots(loaded);
  const {
    result: [report, scale],
    missing,
  } = await withStoreOrEmpty(
    c,
    async (store): Promise<[StatusReport, ScaleStatus]> => [await collectStatus(loaded.bots, store, Date.now(), broken), await collectScale(store)],
  );
  const { problems } = loaded;
  if (c.json) {
    c.out(
      JSON.stringify({
        day_start: new Date(report.day_start_ms).toISOString(),
        bots: [
          ...report.bots.map((b) => ({
            ...b,
            day_start: new Date(b.day_start_ms).toISOString(),
            last_message_at: b.last_message_ms === null ? null : new Date(b.last_message_ms).toISOString(),
            last_recovery: b.last_recovery && { ...b.last_recovery, at: new Date(b.last_recovery.at_ms).toISOString() },
            problems: [] as string[],
          })),
          ...report.broken.map((b) => ({ name: b.name, file: b.file, problems: b.problems })),
        ].sort((a, b) => a.name.localeCompare(b.name)),
        accounts: report.accounts.map((a) => ({
          account: a.account,
          balance: formatCredits(a.balance),
          balance_hundredths: a.balance,
          replies_left: a.replies_left,
        })),
        problems: problems.map(formatProblem),
        instances: scale.instances,
        owners: scale.owners,
        database_missing: missing ?? null,
      }),
    );
    return report;
  }
  if (missing) c.out(chalk.yellow(`${missing} yet: nothing stored (bots start or bots balance add creates it).\n`));
  if (!report.bots.length && !report.broken.length) c.out(`No bot files (*.yaml) in ${c.configDir}.`);
  else {
    const zones = [...new Set(report.bots.map((b) => b.timezone))];
    c.out(chalk.bold(`Bots (messages today, since midnight ${zones.length === 1 ? zones[0] : "in each bot's timezone"})`));
    const rows = [
      ...report.bots.map((b) => ({ name: b.name, cells: [terminalSafe(b.name), ...STATUS_COLUMNS.map((col) => col.cell(b)), ""] })),
      // A broken file's name and problem quote the file as it is (a key name, a file name).
      ...report.broken.map((b) => ({
        name: b.name,
        cells: [terminalSafe(b.name), ...STATUS_COLUMNS.map(() => chalk.dim("-")), chalk.red(terminalSafe(problemSummary(b)))],
      })),
    ].sort((a, b) => a.name.localeCompare(b.name));
    c.out(
      table(
        ["BOT", ...STATUS_COLUMNS.map((col) => col.header), "PROBLEM"],
        rows.map((r) => r.cells),
      ),
    );
  }
  if (report.bots.length) {
    c.out("");
    c.out(chalk.bold("Open messages (any age) and the last recovery at start"));
    const warn = (n: number, paint: (s: string) => string) => (n ? paint(String(n)) : "0");
    c.out(
      table(
        ["BOT", "WAITING", "UNCONFIRMED", "PARTIAL", "FAILED", "EXPIRED", "LAST RECOVERY"],
        report.bots.map((b) => [
          b.name,
          String(b.waiting),
          warn(b.unconfirmed, chalk.yellow),
          warn(b.partial, chalk.yellow),
          warn(b.failed_total, chalk.red),
          warn(b.expired, chalk.yellow),
          b.last_recovery ? `${formatTime(b.last_recovery.at_ms, b.timezone)}: ${describeRecovery(b.last_recovery)}` : "-",
        ]),
      ),
    );
  }
  if (scale.instances.length || scale.owners.length) {
    c.out("");
    c.out(chalk.bold("Instances (dead once the heartbeat is older than their --lease-ttl) and bot owners"));
    c.out(
      table(
        ["INSTANCE", "HOST", "PID", "LEASE TTL", "HEARTBEAT AGE", "BOTS OWNED"],
        scale.instances.map((i) => [
          terminalSafe(i.id),
          terminalSafe(i.host),
          String(i.pid),
          `${i.lease_ttl_ms / 1000} s`,
          i.alive ? `${(i.heartbeat_age_ms / 1000).toFixed(1)} s` : chalk.red(`${(i.heartbeat_age_ms / 1000).toFixed(1)} s (dead)`),
          terminalSafe(i.bots_owned.join(", ")) || "-",
        ]),
      ),
    );
    c.out(
      table(
        ["BOT", "OWNER", "EPOCH"],
        scale.owners.map((o) => [terminalSafe(o.bot), o.owner === null ? chalk.yellow("(none)") : terminalSafe(o.owner), String(o.epoch)]),
      ),
    );
  }
  c.out("");
  if (!report.accounts.length) c.out("No balance accounts yet. Top one up with: bots balance add 500");
  else
    c.out(
      table(
        ["ACCOUNT", "BALANCE", "REPLIES LEFT"],
        report.accounts.map((a) => [terminalSafe(a.account), chalk.bold(formatCredits(a.balance)), a.replies_left === null ? "-" : String(a.replies_left)]),
      ),
    );
  if (problems.length) {
    c.out("");
    c.out(chalk.red(`${problems.length} config problem${problems.length === 1 ? "" : "s"} (run bots config check):`));
    for (const p of problems) c.out(`  ${terminalSafe(formatProblem(p))}`);
  }
  const unconfirmed = report.bots.reduce((a, b) => a + b.unconfirmed, 0);
  if (unconfirmed)
    c.out(
      chalk.yellow(
        `\n${unconfirmed} answer(s) unconfirmed (the connection failed after sending, or the process stopped while sending; they may have arrived, charged): check them with bots replay --status unconfirmed`,
      ),
    );
  const partial = report.bots.reduce((a, b) => a + b.partial, 0);
  if (partial) c.out(chalk.yellow(`\n${partial} answer(s) partly delivered (charged): bots replay --send --status partial sends the missing parts`));
  const failed = report.bots.reduce((a, b) => a + b.failed + b.no_balance, 0);
  if (failed) {
    const earliest = Math.min(...report.bots.map((b) => b.day_start_ms));
    c.out(chalk.yellow(`\n${failed} message(s) unanswered today: bots replay --send --since ${Math.max(1, Math.ceil((Date.now() - earliest) / 3_600_000))}h`));
  }
  return report;
}

/** First problem of a broken file without its file prefix, and how many more. */
function problemSummary(b: BrokenBot): string {
  const first = (b.problems[0] ?? "does not load").replace(`${b.file}`, "").replace(/^:\d*:?\s*/, "");
  return b.problems.length > 1 ? `${first} (+${b.problems.length - 1} more)` : first;
}
