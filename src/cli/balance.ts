import { readdirSync } from "node:fs";
import chalk from "chalk";
import { UsageError } from "../errors.js";
import { closest } from "../core/closest.js";
import { formatCredits, parseAmount, parseSignedAmount } from "../storage/balance.js";
import type { Store } from "../storage/index.js";
import { accountSummaries, replyCosts } from "../core/status.js";
import type { CliContext } from "./context.js";
import type { BotConfig } from "../config/schema.js";
import { accountZone, formatTime, table, withStore, withStoreOrEmpty } from "./shared.js";
import { parseCount } from "./time.js";

/**
 * `bots balance [--account A]`: each account's balance, how many replies it still pays for
 * (from the bots' `cost_per_reply` and `stop_below` when configs are readable) and its last
 * movement. `--json` prints `{accounts: [{account, balance, balance_hundredths, replies_left,
 * last_movement_at}]}`.
 */
export async function showBalance(c: CliContext, opts: { account?: string }): Promise<void> {
  const bots = await readableBots(c);
  const costs = replyCosts(bots);
  const { result: summaries, missing } = await withStoreOrEmpty(c, (store) => accountSummaries(store, costs, opts.account));
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
      rows.map((r) => [
        r.account,
        chalk.bold(r.balance),
        r.replies_left === null ? "-" : String(r.replies_left),
        r.last_movement ? `${r.last_movement} at ${formatTime(Date.parse(r.last_movement_at!), accountZone(r.account, bots))}` : "-",
      ]),
    ),
  );
}

/**
 * `bots balance add AMOUNT`: validates the amount (500, 12.5, 12,50; refuses signs, exponents,
 * zero, more than two decimals, more than 1,000,000,000), asks for confirmation on a TTY unless
 * `--yes`, writes one ledger row.
 * @param promptContext where to ask (@inquirer/prompts context); stdin/stdout by default
 * @throws BalanceError (exit 2) for a bad amount, with nothing written
 */
export async function addBalance(
  c: CliContext,
  amountText: string,
  opts: { account?: string; note?: string; yes?: boolean; newAccount?: boolean },
  promptContext?: { input: NodeJS.ReadableStream; output: NodeJS.WritableStream },
): Promise<void> {
  const account = opts.account ?? "default";
  const amount = usage(() => parseAmount(amountText));
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(account))
    throw new UsageError("ACCOUNT_INVALID", `account name '${account}' is not valid`, { hint: "letters, digits, '_', '.', '-' (1-64)" });
  if (!opts.newAccount) await requireKnownAccount(c, account);
  if (c.interactive && !opts.yes && !c.json) {
    const { confirm } = await import("@inquirer/prompts");
    const ok = await confirm({ message: `Add ${formatCredits(amount)} credits to account '${account}'?`, default: true }, promptContext as never);
    if (!ok) {
      c.err("Cancelled; nothing written.");
      return;
    }
  }
  await withStore(
    c,
    async (store) => {
      const row = await store.balance.topUp(account, amount, opts.note);
      if (c.json)
        c.out(
          JSON.stringify({
            account: row.account,
            added: formatCredits(amount),
            balance: formatCredits(row.balance_after),
            balance_hundredths: row.balance_after,
            ledger_id: row.id,
          }),
        );
      else c.out(`Added ${chalk.bold(formatCredits(amount))} to ${row.account}; balance ${chalk.bold(formatCredits(row.balance_after))}.`);
    },
    { create: true },
  );
}

/**
 * `bots balance adjust AMOUNT --account A --note TEXT`: a signed correction (`-10` takes 10.00
 * back, `2.50` adds) written as an `adjust` ledger row; the ledger is never edited, so it still
 * sums to the balance. Refuses an account without a ledger and a balance that would go below zero.
 * @throws UsageError (exit 2) for a bad amount, a missing note or account; BalanceError (exit 1)
 * when the balance cannot give the amount (nothing written)
 */
export async function adjustBalance(
  c: CliContext,
  amountText: string,
  opts: { account?: string; note?: string; yes?: boolean },
  promptContext?: { input: NodeJS.ReadableStream; output: NodeJS.WritableStream },
): Promise<void> {
  const delta = usage(() => parseSignedAmount(amountText));
  if (!opts.account)
    throw new UsageError("ACCOUNT_REQUIRED", "--account is required for an adjustment", {
      hint: 'bots balance adjust -- -10 --account default --note "top-up to the wrong account"',
    });
  if (!opts.note?.trim())
    throw new UsageError("BALANCE_NOTE_REQUIRED", "--note is required: the ledger keeps why the balance was corrected", {
      hint: 'e.g. --note "typo in invoice 42"',
    });
  const account = opts.account;
  if (c.interactive && !opts.yes && !c.json) {
    const { confirm } = await import("@inquirer/prompts");
    const ok = await confirm(
      { message: `${delta < 0 ? "Take" : "Add"} ${formatCredits(Math.abs(delta))} credits ${delta < 0 ? "from" : "to"} account '${account}'?`, default: false },
      promptContext as never,
    );
    if (!ok) {
      c.err("Cancelled; nothing written.");
      return;
    }
  }
  await withStore(c, async (store) => {
    let row;
    try {
      row = await store.balance.adjust(account, delta, opts.note!);
    } catch (error) {
      if ((error as { code?: string }).code === "BALANCE_ACCOUNT_UNKNOWN") throw unknownAccount(account, await knownAccounts(c, store));
      throw error;
    }
    if (c.json)
      c.out(
        JSON.stringify({
          account,
          adjusted: formatCredits(delta),
          balance: formatCredits(row.balance_after),
          balance_hundredths: row.balance_after,
          ledger_id: row.id,
        }),
      );
    else c.out(`Adjusted ${account} by ${chalk.bold((delta > 0 ? "+" : "") + formatCredits(delta))}; balance ${chalk.bold(formatCredits(row.balance_after))}.`);
  });
}

/** Runs a parser and turns its BalanceError into a UsageError (exit 2) with the same hint. */
function usage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new UsageError("BALANCE_AMOUNT_INVALID", (error as Error).message, { hint: (error as { hint?: string }).hint });
  }
}

/** Accounts the bot files name (src/config/accounts.ts); the YAML parser is loaded only when there are files. */
async function namedAccounts(c: CliContext): Promise<string[]> {
  const files = botFiles(c);
  if (!files.length) return [];
  return (await import("../config/accounts.js")).accountsNamedIn(c.configDir, files);
}

/** Accounts the configs name and accounts the database has. */
async function knownAccounts(c: CliContext, store?: Store): Promise<{ configured: string[]; stored: string[] }> {
  const configured = await namedAccounts(c);
  const stored = store ? (await store.balance.list()).map((a) => a.account) : [];
  return { configured, stored };
}

/**
 * A top-up goes to an account a config names or one that has a ledger; anything else is
 * probably a typo (`defualt`), which would otherwise open a new account silently.
 * @throws UsageError `ACCOUNT_NEW` (exit 2) with a did-you-mean and `--new-account`
 */
async function requireKnownAccount(c: CliContext, account: string): Promise<void> {
  const { configured } = await knownAccounts(c);
  if (configured.includes(account)) return;
  let stored: string[] = [];
  try {
    stored = await withStore(c, async (store) => (await knownAccounts(c, store)).stored);
  } catch (error) {
    // No database yet: no account has a ledger.
    if ((error as { code?: string }).code !== "DB_MISSING") throw error;
  }
  if (stored.includes(account)) return;
  throw unknownAccount(account, { configured, stored }, true);
}

function unknownAccount(account: string, known: { configured: string[]; stored: string[] }, offerNew = false): UsageError {
  const all = [...new Set([...known.configured, ...known.stored])].sort();
  const guess = closest(account, all);
  const what = offerNew ? "is new: no bot config names it and it has no ledger" : "has no ledger: nothing to adjust";
  return new UsageError(offerNew ? "ACCOUNT_NEW" : "ACCOUNT_UNKNOWN", `account '${account}' ${what}${guess ? ` (did you mean '${guess}'?)` : ""}`, {
    hint: `${offerNew ? "to open it, add --new-account; " : ""}accounts: ${all.join(", ") || "none yet"}`,
  });
}

/** `bots balance history`: ledger rows, newest first; `--json` prints `{ledger: [...]}`. */
export async function balanceHistory(c: CliContext, opts: { account?: string; limit: string }): Promise<void> {
  const limit = parseCount(opts.limit, "--limit", 1, 100_000);
  const bots = await readableBots(c);
  await withStore(c, async (store) => {
    const rows = await store.balance.history(opts.account, limit);
    if (c.json) {
      c.out(
        JSON.stringify({
          ledger: rows.map((r) => ({
            id: r.id,
            account: r.account,
            reason: r.reason,
            delta: formatCredits(r.delta),
            balance_after: formatCredits(r.balance_after),
            message_id: r.message_id,
            note: r.note,
            at: new Date(r.created_ms).toISOString(),
          })),
        }),
      );
      return;
    }
    if (!rows.length) {
      c.out("The ledger is empty.");
      return;
    }
    c.out(
      table(
        ["ID", "TIME", "ACCOUNT", "REASON", "AMOUNT", "BALANCE", "MESSAGE", "NOTE"],
        rows.map((r) => [
          String(r.id),
          formatTime(r.created_ms, accountZone(r.account, bots)),
          r.account,
          r.reason,
          (r.delta > 0 ? chalk.green("+") : "") + formatCredits(r.delta),
          formatCredits(r.balance_after),
          r.message_id === null ? "" : String(r.message_id),
          r.note ?? "",
        ]),
      ),
    );
  });
}

/**
 * The YAML file names in the config dir; none when it cannot be read. The YAML parser and the
 * config schemas are loaded only when there are files to read (bench/cli-start.ts).
 */
function botFiles(c: CliContext): string[] {
  try {
    return readdirSync(c.configDir).filter((f) => /\.ya?ml$/.test(f));
  } catch {
    return [];
  }
}

/** The bots of the readable configs; none when the config dir cannot be read. */
async function readableBots(c: CliContext): Promise<BotConfig[]> {
  // No bot files: nothing to load (loadBotConfigs would find no bots either).
  if (!botFiles(c).length) return [];
  const { loadBotConfigs } = await import("../config/load.js");
  try {
    return loadBotConfigs(c.configDir, c.env).bots;
  } catch {
    // No configs (or unreadable ones) only means replies left and local times cannot be shown.
    return [];
  }
}
