import type { Kysely } from "kysely";
import { normalise, type MessageRow } from "./messages.js";
import type { Schema } from "./schema.js";

/** Counts of one bot's messages in a period (the head of the dialog report). */
export interface PeriodCounts {
  /** Distinct thread keys with a message in the period. */
  dialogs: number;
  /** Incoming messages (from users), any status. */
  messages: number;
  /** Incoming messages answered. */
  answered: number;
  /** Incoming messages whose answer failed (kept for `bots replay --send`). */
  failed: number;
  /** Incoming messages filtered as spam. */
  filtered: number;
  /** Incoming messages not answered for lack of balance. */
  noBalance: number;
  /** Answers sent. */
  replies: number;
  /** Sum of the answers' cost, hundredths of a credit. */
  cost: number;
}

/** One page of threads: their keys, in the order the threads started. */
export interface ThreadPage {
  threads: string[];
  /** Pass back as `after` for the next page; null when this was the last page. */
  cursor: number | null;
}

/**
 * Read-only queries over `messages` by period, for reports. Periods are `[sinceMs, untilMs)`,
 * epoch ms UTC. Large periods are read in pages (keyset on the thread's first message id), so a
 * report never holds a whole period in memory.
 */
export class DialogsRepo {
  constructor(private readonly db: Kysely<Schema>) {}

  /** Counts of a bot's messages created in the period. */
  async counts(bot: string, sinceMs: number, untilMs: number): Promise<PeriodCounts> {
    const rows = await this.db
      .selectFrom("messages")
      .select((eb) => ["direction", "status", eb.fn.countAll<number>().as("n"), eb.fn.sum<number>("cost").as("cost")])
      .where("bot", "=", bot)
      .where("created_ms", ">=", sinceMs)
      .where("created_ms", "<", untilMs)
      .groupBy(["direction", "status"])
      .execute();
    const dialogs = await this.db
      .selectFrom("messages")
      .select((eb) => eb.fn.count<number>("thread_key").distinct().as("n"))
      .where("bot", "=", bot)
      .where("created_ms", ">=", sinceMs)
      .where("created_ms", "<", untilMs)
      .executeTakeFirst();
    const c: PeriodCounts = { dialogs: Number(dialogs?.n ?? 0), messages: 0, answered: 0, failed: 0, filtered: 0, noBalance: 0, replies: 0, cost: 0 };
    for (const r of rows) {
      const n = Number(r.n);
      if (r.direction === "out") {
        c.replies += n;
        c.cost += Number(r.cost ?? 0);
        continue;
      }
      c.messages += n;
      if (r.status === "answered") c.answered += n;
      else if (r.status === "failed") c.failed += n;
      else if (r.status === "filtered") c.filtered += n;
      else if (r.status === "no_balance") c.noBalance += n;
    }
    return c;
  }

  /** Threads with messages in the period, in the order they started, `limit` at a time. */
  async threads(bot: string, sinceMs: number, untilMs: number, after: number | null, limit: number): Promise<ThreadPage> {
    let q = this.db
      .selectFrom("messages")
      .select((eb) => ["thread_key", eb.fn.min<number>("id").as("first_id")])
      .where("bot", "=", bot)
      .where("created_ms", ">=", sinceMs)
      .where("created_ms", "<", untilMs)
      .groupBy("thread_key");
    if (after !== null) q = q.having((eb) => eb.fn.min("id"), ">", after);
    const rows = await q.orderBy("first_id").limit(limit).execute();
    return { threads: rows.map((r) => r.thread_key), cursor: rows.length === limit ? Number(rows[rows.length - 1]!.first_id) : null };
  }

  /** Messages of the given threads in the period, by thread then id. */
  async messagesOf(bot: string, threads: string[], sinceMs: number, untilMs: number): Promise<MessageRow[]> {
    if (!threads.length) return [];
    const rows = await this.db
      .selectFrom("messages")
      .selectAll()
      .where("bot", "=", bot)
      .where("thread_key", "in", threads)
      .where("created_ms", ">=", sinceMs)
      .where("created_ms", "<", untilMs)
      .orderBy("thread_key")
      .orderBy("id")
      .execute();
    return rows.map(normalise);
  }
}
