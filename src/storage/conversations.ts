import { sql, type Kysely, type SelectQueryBuilder } from "kysely";
import { normalise, type MessageRow } from "./messages.js";
import type { Schema } from "./schema.js";

/** Filters of `bots dialogs`: every given one must hold for a message to match. */
export interface ConversationFilter {
  /** Only messages created at or after this, epoch ms UTC. */
  sinceMs?: number;
  /** Only messages whose text contains this (case-insensitive on MySQL's collation and SQLite's ASCII LIKE). */
  grep?: string;
  /** Only messages with one of these statuses (`failed`, `answered`...). */
  statuses?: string[];
}

/** One conversation in the list. Times are epoch ms UTC. */
export interface ThreadSummary {
  bot: string;
  thread_key: string;
  /** The user's name from the newest incoming message that has one. */
  user_name: string | null;
  user_id: string | null;
  /** Messages of the thread in both directions (all of them, not only matching ones). */
  messages: number;
  last_ms: number;
  /** Status of the newest incoming message. */
  last_status: string | null;
  /** Id of the newest matching message: the list's order and the paging cursor. */
  last_match_id: number;
}

/** A page of conversations, newest activity first. */
export interface ThreadList {
  threads: ThreadSummary[];
  /** Pass as `before` for the next page; null on the last page. */
  cursor: number | null;
}

/** Rows read per step while collecting distinct threads. */
const CHUNK = 2000;

/**
 * Read-only queries of `bots dialogs`. The list walks a bot's messages newest first on the
 * `(bot, id)` index (migration 0006) until it has a page of distinct threads, then reads each
 * thread's counts on `(bot, thread_key, id)`: the cost follows the page, not the table.
 */
export class ConversationsRepo {
  constructor(private readonly db: Kysely<Schema>) {}

  /** Whether any message was stored for `bot`. */
  async hasBot(bot: string): Promise<boolean> {
    return (await this.db.selectFrom("messages").select("id").where("bot", "=", bot).limit(1).executeTakeFirst()) !== undefined;
  }

  /** Every bot name with stored messages, sorted. */
  async bots(): Promise<string[]> {
    return (await this.db.selectFrom("messages").select("bot").distinct().orderBy("bot").execute()).map((r) => r.bot);
  }

  private filtered<O>(q: SelectQueryBuilder<Schema, "messages", O>, f: ConversationFilter): SelectQueryBuilder<Schema, "messages", O> {
    if (f.sinceMs !== undefined) q = q.where("created_ms", ">=", f.sinceMs);
    if (f.statuses?.length) q = q.where("status", "in", f.statuses as never);
    // `!` escapes LIKE's wildcards in both dialects, so `50%` finds "50%" literally.
    if (f.grep) q = q.where(sql<boolean>`text LIKE ${`%${f.grep.replace(/[!%_]/g, (m) => `!${m}`)}%`} ESCAPE '!'`);
    return q;
  }

  /**
   * Conversations with a matching message, newest activity first, `limit` at a time.
   * @param bot one bot, or null for every bot
   * @param before a cursor from the previous page
   */
  async list(bot: string | null, filter: ConversationFilter, limit: number, before: number | null = null): Promise<ThreadList> {
    const found = new Map<string, { bot: string; thread_key: string; last_match_id: number }>();
    let from = before;
    let exhausted = false;
    while (found.size < limit && !exhausted) {
      let q = this.filtered(this.db.selectFrom("messages").select(["id", "bot", "thread_key"]), filter);
      if (bot !== null) q = q.where("bot", "=", bot);
      if (from !== null) q = q.where("id", "<", from);
      const rows = await q.orderBy("id", "desc").limit(CHUNK).execute();
      exhausted = rows.length < CHUNK;
      const fresh: Array<{ bot: string; thread_key: string; last_match_id: number }> = [];
      for (const r of rows) {
        const key = `${r.bot}\u0000${r.thread_key}`;
        if (found.has(key) || fresh.some((f) => f.bot === r.bot && f.thread_key === r.thread_key)) continue;
        fresh.push({ bot: r.bot, thread_key: r.thread_key, last_match_id: Number(r.id) });
      }
      // On a later page, a thread whose newest match is at or after the cursor was shown already.
      const shown = before === null ? new Set<string>() : await this.matchedSince(fresh, filter, before);
      for (const f of fresh) {
        if (found.size >= limit) break;
        if (!shown.has(`${f.bot}\u0000${f.thread_key}`)) found.set(`${f.bot}\u0000${f.thread_key}`, f);
      }
      if (rows.length) from = Number(rows[rows.length - 1]!.id);
    }
    const threads = await this.summaries([...found.values()]);
    return { threads, cursor: found.size >= limit && threads.length ? threads[threads.length - 1]!.last_match_id : null };
  }

  private async matchedSince(threads: Array<{ bot: string; thread_key: string }>, filter: ConversationFilter, cursor: number): Promise<Set<string>> {
    const out = new Set<string>();
    for (const [bot, keys] of byBot(threads)) {
      const rows = await this.filtered(this.db.selectFrom("messages").select("thread_key").distinct(), filter)
        .where("bot", "=", bot)
        .where("thread_key", "in", keys)
        .where("id", ">=", cursor)
        .execute();
      for (const r of rows) out.add(`${bot}\u0000${r.thread_key}`);
    }
    return out;
  }

  private async summaries(threads: Array<{ bot: string; thread_key: string; last_match_id: number }>): Promise<ThreadSummary[]> {
    const stats = new Map<string, { n: number; last_ms: number; last_in_id: number | null }>();
    for (const [bot, keys] of byBot(threads)) {
      const rows = await this.db
        .selectFrom("messages")
        .select((eb) => [
          "thread_key",
          eb.fn.countAll<number>().as("n"),
          eb.fn.max<number>("created_ms").as("last_ms"),
          eb.fn.max<number | null>(eb.case().when("direction", "=", "in").then(eb.ref("id")).end()).as("last_in_id"),
        ])
        .where("bot", "=", bot)
        .where("thread_key", "in", keys)
        .groupBy("thread_key")
        .execute();
      for (const r of rows)
        stats.set(`${bot}\u0000${r.thread_key}`, {
          n: Number(r.n),
          last_ms: Number(r.last_ms),
          last_in_id: r.last_in_id === null ? null : Number(r.last_in_id),
        });
    }
    const inIds = [...stats.values()].map((s) => s.last_in_id).filter((x): x is number => x !== null);
    const lastIn = new Map<number, { user_name: string | null; user_id: string | null; status: string }>();
    if (inIds.length) {
      for (const r of await this.db.selectFrom("messages").select(["id", "user_name", "user_id", "status"]).where("id", "in", inIds).execute())
        lastIn.set(Number(r.id), r);
    }
    return threads.map((t) => {
      const s = stats.get(`${t.bot}\u0000${t.thread_key}`) ?? { n: 0, last_ms: 0, last_in_id: null };
      const li = s.last_in_id === null ? undefined : lastIn.get(s.last_in_id);
      return {
        bot: t.bot,
        thread_key: t.thread_key,
        user_name: li?.user_name ?? null,
        user_id: li?.user_id ?? null,
        messages: s.n,
        last_ms: s.last_ms,
        last_status: li?.status ?? null,
        last_match_id: t.last_match_id,
      };
    });
  }

  /**
   * The newest `limit` matching messages of one thread, oldest first.
   */
  async thread(bot: string, threadKey: string, filter: ConversationFilter, limit: number): Promise<MessageRow[]> {
    const rows = await this.filtered(this.db.selectFrom("messages").selectAll(), filter)
      .where("bot", "=", bot)
      .where("thread_key", "=", threadKey)
      .orderBy("id", "desc")
      .limit(limit)
      .execute();
    return rows.reverse().map(normalise);
  }

  /** Thread keys a user wrote in, newest first (on `(bot, user_id, created_ms)`). */
  async threadsOfUser(bot: string, userId: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom("messages")
      .select((eb) => ["thread_key", eb.fn.max<number>("created_ms").as("last_ms")])
      .where("bot", "=", bot)
      .where("user_id", "=", userId)
      .groupBy("thread_key")
      .orderBy("last_ms", "desc")
      .execute();
    return rows.map((r) => r.thread_key);
  }
}

function byBot<T extends { bot: string; thread_key: string }>(threads: T[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const t of threads) {
    const keys = m.get(t.bot) ?? [];
    keys.push(t.thread_key);
    m.set(t.bot, keys);
  }
  return m;
}
