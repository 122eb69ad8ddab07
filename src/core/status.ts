import type { BotConfig } from "../config/schema.js";
import type { Store } from "../storage/index.js";
import { startOfDayMs } from "../lib/zoned.js";

/** What one reply costs on an account and the floor replies never go below, hundredths. */
export interface ReplyCost {
  cost: number;
  floor: number;
}

/**
 * Cost and floor per account from the bots' `balance:` sections (hundredths). When several bots
 * share an account the dearest reply counts, so "replies left" is never overstated.
 */
export function replyCosts(bots: BotConfig[]): Map<string, ReplyCost> {
  const map = new Map<string, ReplyCost>();
  for (const b of bots) {
    const cost = Math.round(b.balance.cost_per_reply * 100);
    const prev = map.get(b.balance.account);
    if (!prev || cost > prev.cost) map.set(b.balance.account, { cost, floor: Math.round(b.balance.stop_below * 100) });
  }
  return map;
}

/**
 * How many replies a balance still pays for: `floor((balance - floor) / cost)`, at least 0;
 * null when the cost is unknown or replies are free.
 * @param balance hundredths
 */
export function repliesLeft(balance: number, cost: ReplyCost | undefined): number | null {
  return cost && cost.cost > 0 ? Math.max(0, Math.floor((balance - cost.floor) / cost.cost)) : null;
}

/** One account as `bots balance` and `bots status` show it. Amounts in hundredths. */
export interface AccountSummary {
  account: string;
  balance: number;
  replies_left: number | null;
  /** The newest ledger row, if any. */
  last?: { reason: string; delta: number; created_ms: number };
}

/**
 * Every account (or one) with its balance, replies left and newest ledger movement. An account
 * asked for by name that never had a movement is shown with balance 0.
 */
export async function accountSummaries(store: Pick<Store, "balance">, costs: Map<string, ReplyCost>, account?: string): Promise<AccountSummary[]> {
  let accounts = await store.balance.list();
  if (account) accounts = accounts.filter((a) => a.account === account);
  if (account && accounts.length === 0) accounts = [{ account, balance: 0, updated_ms: 0 }];
  return Promise.all(
    accounts.map(async (a) => {
      const last = (await store.balance.history(a.account, 1))[0];
      return {
        account: a.account,
        balance: a.balance,
        replies_left: repliesLeft(a.balance, costs.get(a.account)),
        ...(last ? { last: { reason: last.reason, delta: Number(last.delta), created_ms: Number(last.created_ms) } } : {}),
      };
    }),
  );
}

/** One bot's line in `bots status`. */
export interface BotStatus {
  name: string;
  channel: string;
  enabled: boolean;
  account: string;
  /** The bot's IANA time zone; "today" starts at its midnight. */
  timezone: string;
  /** Start of the bot's day (midnight in `timezone`), epoch ms UTC. */
  day_start_ms: number;
  /** Incoming messages since the start of the bot's day. */
  in: number;
  /** Of those, answered. */
  answered: number;
  /** Of those, failed (kept for `bots replay --send`). */
  failed: number;
  /** Of those, refused for lack of balance. */
  no_balance: number;
  /** Newest message in either direction, epoch ms UTC, or null. */
  last_message_ms: number | null;
  /** Open items, whatever their age: recorded and not answered yet (`received`). */
  waiting: number;
  /** May have arrived (a connection failed after the request was written, or the process died while it was); never sent again by themselves (`bots replay --status unconfirmed`). */
  unconfirmed: number;
  /** Failed (model or channel error), kept for `bots replay --send`. */
  failed_total: number;
  /** Answers in parts of which some were delivered and a later one failed; charged; `bots replay --send` sends the rest. */
  partial: number;
  /** Too old to resume after a stop; refunded; `bots replay --send` answers them. */
  expired: number;
  /** The last recovery at start, if any. */
  last_recovery: { at_ms: number; resumed: number; refunded: number; expired: number; unconfirmed: number; confirmed: number } | null;
}

/** A bot file that did not load: listed by `bots status` with its problems. */
export interface BrokenBot {
  /** The file name without `.yaml`. */
  name: string;
  /** The file as shown to the operator. */
  file: string;
  /** Each problem as `file:line: field: message`. */
  problems: string[];
}

/** Everything `bots status` shows. */
export interface StatusReport {
  /** Start of the counted day in UTC (bots in other zones carry their own `day_start_ms`). */
  day_start_ms: number;
  bots: BotStatus[];
  /** Bot files with config problems (they do not run). */
  broken: BrokenBot[];
  accounts: AccountSummary[];
}

/**
 * Collects the status of the configured bots: today's message counts per bot (since midnight in
 * the bot's `timezone`), the newest message time, every account with replies left, and the
 * bot files that did not load.
 * @param nowMs epoch ms UTC
 * @param broken bot files with problems, from {@link brokenBots}
 * @throws StorageError when the database cannot be read
 */
export async function collectStatus(
  bots: BotConfig[],
  store: Pick<Store, "messages" | "balance" | "recoveries">,
  nowMs: number,
  broken: BrokenBot[] = [],
): Promise<StatusReport> {
  const dayStartOf = new Map(bots.map((b) => [b.name, startOfDayMs(nowMs, b.timezone)]));
  const starts = [...new Set(dayStartOf.values())];
  const countsByStart = new Map(await Promise.all(starts.map(async (t) => [t, await store.messages.countsSince(t)] as const)));
  const rows = await Promise.all(
    bots.map(async (b): Promise<BotStatus> => {
      const dayStart = dayStartOf.get(b.name)!;
      const mine = countsByStart.get(dayStart)!.filter((c) => c.bot === b.name && c.direction === "in");
      const of = (status: string) => mine.filter((c) => c.status === status).reduce((a, c) => a + c.n, 0);
      const open = await store.messages.countByStatus(b.name, ["received", "unconfirmed", "failed", "partial", "expired"]);
      const rec = await store.recoveries.last(b.name);
      return {
        name: b.name,
        channel: b.channel,
        enabled: b.enabled,
        account: b.balance.account,
        timezone: b.timezone,
        day_start_ms: dayStart,
        in: mine.reduce((a, c) => a + c.n, 0),
        answered: of("answered"),
        failed: of("failed"),
        no_balance: of("no_balance"),
        last_message_ms: await store.messages.lastMessageMs(b.name),
        waiting: open.received ?? 0,
        unconfirmed: open.unconfirmed ?? 0,
        failed_total: open.failed ?? 0,
        partial: open.partial ?? 0,
        expired: open.expired ?? 0,
        last_recovery: rec
          ? {
              at_ms: rec.finished_ms,
              resumed: rec.resumed,
              refunded: rec.refunded,
              expired: rec.expired,
              unconfirmed: rec.unconfirmed,
              confirmed: rec.confirmed,
            }
          : null,
      };
    }),
  );
  return { day_start_ms: startOfDayMs(nowMs, "UTC"), bots: rows, broken, accounts: await accountSummaries(store, replyCosts(bots)) };
}
