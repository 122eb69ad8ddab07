import chalk from "chalk";
import { loadBotConfigs } from "../config/load.js";
import { UsageError } from "../errors.js";
import { formatCredits, parseAmount } from "../storage/balance.js";
import { accountSummaries, replyCosts, type ReplyCost } from "../core/status.js";
import type { CliContext } from "./context.js";
import { formatTime, table, withStore, withStoreOrEmpty } from "./shared.js";
import { parseCount } from "./time.js";

/**
 * `bots balance [--account A]`: each account's balance, how many replies it still pays for
 * (from the bots' `cost_per_reply` and `stop_below` when configs are readable) and its last
 * movement. `--json` prints `{accounts: [{account, balance, balance_hundredths, replies_left,
 * last_movement_at}]}`.
 */
export async function showBalance(c: CliContext, opts: { account?: string }): Promise<void> {
  const costs = configuredCosts(c);
  const { result: summaries, missing } = await withStoreOrEmpty(c, (store) => accountSummaries(store, costs, opts.account));
  {
    const rows = summaries.map((a) => ({
      account: a.account,
      balance: formatCredits(a.balance),
      balance_hundredths: a.balance,
      replies_left: a.replies_left,
      last_movement_at: a.last ? new Date(a.last.created_ms).toISOString() : null,
      last_movement: a.last ? `${a.last.reason} ${a.last.delta > 0 ? "+" : ""}${formatCredits(a.last.delta)}` : null,
    }));
    if (c.json) {
      c.out(JSON.stringify({ accounts: rows }));
      return;
    }
    if (!rows.length) {
      c.out(`No accounts yet${missing ? ` (${missing})` : ""}. Top one up with: bots balance add 500`);
      return;
    }
    c.out(
      table(
        ["ACCOUNT", "BALANCE", "REPLIES LEFT", "LAST MOVEMENT"],
        rows.map((r) => [r.account, chalk.bold(r.balance), r.replies_left === null ? "-" : String(r.replies_left), r.last_movement ? `${r.last_movement} at ${formatTime(Date.parse(r.last_movement_at!))}` : "-"]),
      ),
    );
  }
}

/**
 * `bots balance add AMOUNT`: validates the amount (500, 12.5, 12,50; refuses signs, exponents,
 * zero, more than two decimals, more than 1,000,000,000), asks for confirmation on a TTY unless
 * `--yes`, writes one ledger row.
 * @param promptContext where to ask (@inquirer/prompts context); stdin/stdout by default
 * @throws BalanceError (exit 2) for a bad amount, with nothing written
 */
export async function addBalance(c: CliContext, amountText: string, opts: { account?: string; note?: string; yes?: boolean }, promptContext?: { input: NodeJS.ReadableStream; output: NodeJS.WritableStream }): Promise<void> {
  const account = opts.account ?? "default";
  let amount: number;
  try {
    amount = parseAmount(amountText);
  } catch (error) {
    throw new UsageError("BALANCE_AMOUNT_INVALID", (error as Error).message, { hint: (error as { hint?: string }).hint });
  }
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(account)) throw new UsageError("ACCOUNT_INVALID", `account name '${account}' is not valid`, { hint: "letters, digits, '_', '.', '-' (1-64)" });
  if (c.interactive && !opts.yes && !c.json) {
    const { confirm } = await import("@inquirer/prompts");
    const ok = await confirm({ message: `Add ${formatCredits(amount)} credits to account '${account}'?`, default: true }, promptContext as never);
    if (!ok) {
      c.err("Cancelled; nothing written.");
      return;
    }
  }
  await withStore(c, async (store) => {
    const row = await store.balance.topUp(account, amount, opts.note);
    if (c.json) c.out(JSON.stringify({ account: row.account, added: formatCredits(amount), balance: formatCredits(row.balance_after), balance_hundredths: row.balance_after, ledger_id: row.id }));
    else c.out(`Added ${chalk.bold(formatCredits(amount))} to ${row.account}; balance ${chalk.bold(formatCredits(row.balance_after))}.`);
  }, { create: true });
}

/** `bots balance history`: ledger rows, newest first; `--json` prints `{ledger: [...]}`. */
export async function balanceHistory(c: CliContext, opts: { account?: string; limit: string }): Promise<void> {
  const limit = parseCount(opts.limit, "--limit", 1, 100_000);
  await withStore(c, async (store) => {
    const rows = await store.balance.history(opts.account, limit);
    if (c.json) {
      c.out(JSON.stringify({ ledger: rows.map((r) => ({ id: r.id, account: r.account, reason: r.reason, delta: formatCredits(r.delta), balance_after: formatCredits(r.balance_after), message_id: r.message_id, note: r.note, at: new Date(r.created_ms).toISOString() })) }));
      return;
    }
    if (!rows.length) {
      c.out("The ledger is empty.");
      return;
    }
    c.out(
      table(
        ["ID", "TIME", "ACCOUNT", "REASON", "AMOUNT", "BALANCE", "MESSAGE", "NOTE"],
        rows.map((r) => [String(r.id), formatTime(r.created_ms), r.account, r.reason, (r.delta > 0 ? chalk.green("+") : "") + formatCredits(r.delta), formatCredits(r.balance_after), r.message_id === null ? "" : String(r.message_id), r.note ?? ""]),
      ),
    );
  });
}

/** Cost and floor per account from readable configs (hundredths); unreadable configs are skipped. */
export function configuredCosts(c: CliContext): Map<string, ReplyCost> {
  try {
    return replyCosts(loadBotConfigs(c.configDir, c.env).bots);
  } catch {
    // No configs (or unreadable ones) only means replies left cannot be shown.
    return new Map();
  }
}
