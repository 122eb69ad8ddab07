import { hash } from "node:crypto";
import { sql, type Kysely, type Selectable } from "kysely";
import { FencedError } from "../errors.js";
import { scrubSecrets } from "../secrets.js";
import { isUniqueViolation, transact, type Dialect } from "./db.js";
import { fenceHolds, type OwnerFence } from "./owners.js";
import { PreparedQueries, type Slot } from "./prepared.js";
import { answerProcedures } from "./procedures.js";
import type { IncomingStatus, MessagesTable, PartialAnswer, Schema } from "./schema.js";

/** A stored message row; times are epoch ms UTC, cost in hundredths. */
export type MessageRow = Selectable<MessagesTable>;

/** Fields needed to store an incoming message. */
export interface NewIncoming {
  bot: string;
  channel: string;
  thread_key: string;
  chat_id: string;
  user_id: string | null;
  user_name: string | null;
  text: string;
  dedupe_key: string | null;
  channel_message_id: string | null;
  meta: StoredMeta | null;
  status: IncomingStatus;
  error?: string | null;
  created_ms: number;
}

/** Fields of an answer we sent. */
export interface NewOutgoing {
  incoming: Pick<MessageRow, "id" | "bot" | "channel" | "thread_key" | "chat_id">;
  text: string;
  channel_message_id: string | null;
  model: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  cost: number | null;
  latency_ms: number | null;
  created_ms: number;
  /** How many parts were delivered (`settle` stores it on the incoming row). */
  parts?: number;
}

/**
 * Rows read beyond a history's `limit` (see `MessagesRepo.history`): how many answers may be
 * stored after later messages of their thread (several messages sent while one was answered)
 * before the history read falls back to reading the whole thread.
 */
export const HISTORY_SLACK = 16;

/** A row of a history read. */
interface HistoryRow {
  id: number;
  reply_to_id: number | null;
  direction: "in" | "out";
  text: string;
  created_ms: number;
  meta: string | null;
}

/** One turn of stored dialog, oldest first. */
export interface HistoryTurn {
  role: "user" | "assistant";
  text: string;
  created_ms: number;
  /** Pictures the user sent with it (the meta's `images`); the model sees a placeholder. */
  images?: number;
}

/**
 * The stored meta of an incoming message (`messages.meta`, JSON): what is needed to answer it
 * later, written once when it is recorded (src/core/stages/record.ts, the 2GIS pass). Features'
 * per-answer extras (buttons, prompt sections) are not part of it.
 */
export interface StoredMeta {
  /** The prompt kind (src/llm/prompt.ts `PromptKind`: `messages`, `comments`, `reviews`). */
  kind?: string;
  /** Channel data the same channel reads back to deliver the answer (reply-to ids, post ids). */
  target?: Record<string, unknown>;
  /** Extra prompt variables (`post_text`, `rating`...). */
  vars?: Record<string, string>;
  /** Pictures (src/core/images.ts `ImageRef`; rows of older versions: bare Telegram `file_id`s), checked by `storedImages`. */
  images?: unknown[];
  /** Album: Telegram `media_group_id`. */
  group?: string;
  /** A button press, so a resumed press is still a press. */
  button?: { data: string };
  /** A membership change, so recovery never sends it to the model as text. */
  membership?: "blocked" | "unblocked";
  /** A voice message (src/core/voice.ts `VoiceRef`, with its transcript once made), checked by `storedVoice`. */
  voice?: unknown;
}

/** Encodes a stored meta for `messages.meta` (JSON). */
export function encodeMeta(meta: StoredMeta): string {
  return JSON.stringify(meta);
}

/**
 * Decodes `messages.meta`: null (outgoing rows) or anything that is not a JSON object reads as
 * no meta (`{}`), so one damaged row cannot stop the reads of its thread.
 */
export function decodeMeta(meta: string | null): StoredMeta {
  if (!meta) return {};
  try {
    const value: unknown = JSON.parse(meta);
    return value && typeof value === "object" && !Array.isArray(value) ? (value as StoredMeta) : {};
  } catch {
    return {};
  }
}

/** sha1 of text with case and whitespace folded, for the duplicate filter (hex). */
export function textHash(text: string): string {
  // The one-shot `hash` (Node 20.12+) makes no Hash object: a third of createHash's time.
  return hash("sha1", text.trim().toLowerCase().replace(/\s+/g, " "), "hex");
}

/** Messages in both directions (docs/architecture.md, "Storage"). */
export class MessagesRepo {
  /** The statements of every message, compiled once per shape. */
  private readonly prepared = new PreparedQueries();

  /**
   * @param dialect the database's: on MySQL/MariaDB {@link settle} calls the stored procedure
   * `bots_settle` when the database has it (migration 0014). @defaultValue "sqlite"
   */
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly now: () => number = Date.now,
    private readonly dialect: Dialect = "sqlite",
  ) {}

  /**
   * Stores an incoming message.
   * @returns its id, or null when (bot, dedupe_key) was stored before (a redelivery)
   */
  async insertIncoming(m: NewIncoming): Promise<number | null> {
    try {
      const res = await this.prepared.run(
        this.db,
        "insertIncoming",
        (p) =>
          this.db.insertInto("messages").values({
            bot: p("bot"),
            channel: p("channel"),
            direction: "in",
            status: p("status"),
            thread_key: p("thread_key"),
            chat_id: p("chat_id"),
            user_id: p("user_id"),
            user_name: p("user_name"),
            text: p("text"),
            text_hash: p("text_hash"),
            dedupe_key: p("dedupe_key"),
            channel_message_id: p("channel_message_id"),
            reply_to_id: null,
            model: null,
            prompt_tokens: null,
            completion_tokens: null,
            cost: null,
            latency_ms: null,
            error: p("error"),
            meta: p("meta"),
            created_ms: p("created_ms"),
            updated_ms: p("created_ms"),
          }),
        {
          bot: m.bot,
          channel: m.channel,
          status: m.status,
          thread_key: m.thread_key,
          chat_id: m.chat_id,
          user_id: m.user_id,
          user_name: m.user_name,
          text: m.text,
          text_hash: textHash(m.text),
          dedupe_key: m.dedupe_key,
          channel_message_id: m.channel_message_id,
          error: scrubSecrets(m.error) ?? null,
          meta: m.meta ? encodeMeta(m.meta) : null,
          created_ms: m.created_ms,
        },
      );
      return Number(res.insertId);
    } catch (error) {
      if (isUniqueViolation(error)) return null;
      throw error;
    }
  }

  /** The incoming message stored under a dedupe key, if any (e.g. `2gis:review:<id>`). */
  async byDedupeKey(bot: string, dedupeKey: string): Promise<MessageRow | undefined> {
    const row = await this.db.selectFrom("messages").selectAll().where("bot", "=", bot).where("dedupe_key", "=", dedupeKey).executeTakeFirst();
    return row && normalise(row);
  }

  /**
   * The `received` incoming messages of one thread, oldest first (id order), at most 100: those
   * recorded before `beforeId` when it is given. Scale-out catch-up (another instance may have
   * recorded them); uses the `(bot, status, id)` index.
   */
  async receivedInThread(bot: string, threadKey: string, beforeId?: number): Promise<MessageRow[]> {
    let s = this.db
      .selectFrom("messages")
      .selectAll()
      .where("bot", "=", bot)
      .where("status", "=", "received")
      .where("direction", "=", "in")
      .where("thread_key", "=", threadKey);
    if (beforeId !== undefined) s = s.where("id", "<", beforeId);
    return (await s.orderBy("id", "asc").limit(100).execute()).map(normalise);
  }

  /** One message by id. */
  async get(id: number): Promise<MessageRow | undefined> {
    const row = await this.db.selectFrom("messages").selectAll().where("id", "=", id).executeTakeFirst();
    return row && normalise(row);
  }

  /**
   * Stores the transcript of a voice message with the incoming row, once: its `text` (and
   * `text_hash`) becomes `text`, its meta becomes `meta` (JSON), so replay, recovery, the history
   * and `bots dialogs` read the transcript and nothing is transcribed again. Only while the row
   * awaits an answer (`received`, `failed`, `no_balance`, `expired`), and with `fence` only while
   * that instance owns the bot.
   * @returns true when the row changed
   */
  async setTranscript(id: number, text: string, meta: Record<string, unknown>, fence?: OwnerFence): Promise<boolean> {
    let q = this.db
      .updateTable("messages")
      .set({ text, text_hash: textHash(text), meta: JSON.stringify(meta), updated_ms: this.now() })
      .where("id", "=", id)
      .where("direction", "=", "in")
      .where("status", "in", ["received", "failed", "no_balance", "expired"]);
    if (fence) q = q.where(fenceHolds(fence));
    const res = await q.executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  /**
   * Moves an incoming message to a new status, optionally only from given statuses, and with
   * `fence` only while that instance owns the bot at that epoch (`bot_owners`, same statement).
   * @returns true when the row changed (false: it was not in one of `from`, or the fence failed)
   */
  async setStatus(
    id: number,
    status: IncomingStatus,
    opts: { error?: string | null; from?: IncomingStatus[]; cost?: number | null; fence?: OwnerFence } = {},
  ): Promise<boolean> {
    const hasError = opts.error !== undefined;
    const hasCost = opts.cost !== undefined;
    const from = opts.from ?? [];
    const f = opts.fence;
    const res = await this.prepared.run(
      this.db,
      `setStatus|${hasError}|${hasCost}|${opts.from ? from.length : -1}|${f !== undefined}`,
      (p) => {
        let q = this.db
          .updateTable("messages")
          .set({
            status: p<IncomingStatus>("status"),
            updated_ms: p<number>("now"),
            ...(hasError ? { error: p("error") } : {}),
            ...(hasCost ? { cost: p("cost") } : {}),
          })
          .where("id", "=", p<number>("id"));
        if (opts.from)
          q = q.where(
            "status",
            "in",
            from.map((_, i) => p<IncomingStatus>(`from${i}`)),
          );
        // Scale-out fencing: the change happens only while the instance still owns the bot at its epoch.
        if (f) q = q.where(fenceHolds(slotFence(p)));
        return q;
      },
      {
        status,
        now: this.now(),
        id,
        ...(hasError ? { error: scrubSecrets(opts.error) ?? null } : {}),
        ...(hasCost ? { cost: opts.cost ?? null } : {}),
        ...Object.fromEntries(from.map((v, i) => [`from${i}`, v])),
        ...(f ? fenceArgs(f) : {}),
      },
    );
    return Number(res.numAffectedRows) === 1;
  }

  /**
   * The mark right before a request of an answer is written (src/channels/write-gate.ts):
   * `from` → `delivering`, with `parts_sent` = `part` (the parts before it were delivered) and,
   * for the first part of a multi-part answer, the answer itself (`delivery`, JSON) so the rest
   * can be sent later without the model. An attempt's first mark is also its claim (answered at
   * most once): `from` is then the statuses an answer is claimed from; its later marks come from
   * `sending` (a part delivered, or a request known not delivered). With `fence` only while that
   * instance owns the bot.
   * @param opts.from statuses the row may be in. @defaultValue ["sending"]
   * @returns true when the row changed (false: it was in none of `from`, or the fence failed)
   */
  async markWriting(id: number, part: number, opts: { delivery?: PartialAnswer; fence?: OwnerFence; from?: readonly IncomingStatus[] } = {}): Promise<boolean> {
    const keep = opts.delivery !== undefined;
    const f = opts.fence;
    const from = opts.from ?? ["sending"];
    const res = await this.prepared.run(
      this.db,
      `markWriting|${keep}|${f !== undefined}|${from.length}`,
      (p) => {
        let q = this.db
          .updateTable("messages")
          .set({ status: "delivering", parts_sent: p("part"), updated_ms: p("now"), ...(keep ? { delivery: p("delivery") } : {}) })
          .where("id", "=", p<number>("id"))
          .where(
            "status",
            "in",
            from.map((_, i) => p<IncomingStatus>(`from${i}`)),
          );
        if (f) q = q.where(fenceHolds(slotFence(p)));
        return q;
      },
      {
        part,
        now: this.now(),
        id,
        ...Object.fromEntries(from.map((v, i) => [`from${i}`, v])),
        ...(keep ? { delivery: JSON.stringify(opts.delivery) } : {}),
        ...(f ? fenceArgs(f) : {}),
      },
    );
    return Number(res.numAffectedRows) === 1;
  }

  /**
   * Back to resumable after a request was not delivered (refused, or never written), or after a
   * part was delivered: `delivering` → `sending`, with `parts_sent` = the parts delivered so far.
   * Not fenced: it records what happened (a recovery that made the row `unconfirmed` first keeps
   * it so: the status condition).
   * @returns true when the row changed
   */
  async unmarkWriting(id: number, partsSent: number): Promise<boolean> {
    const res = await this.db
      .updateTable("messages")
      .set({ status: "sending", parts_sent: partsSent, updated_ms: this.now() })
      .where("id", "=", id)
      .where("status", "=", "delivering")
      .executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  /**
   * Stores an answer and marks its incoming message `answered`, in one transaction: on
   * MySQL/MariaDB with the procedure `bots_settle` (migrations 0014, 0015) one CALL (one round
   * trip), else BEGIN, the update, the insert and COMMIT; a deadlock or lock wait restarts it
   * either way.
   *
   * It records a send that was confirmed, so it holds whatever happened meanwhile, except that
   * it never stores an answer twice and never takes a row another owner claimed:
   * - a row already `answered` with a stored answer (this settle run again after its commit's
   *   reply was lost): nothing written, that answer's id returned;
   * - a row `unconfirmed` (an instance that took the bot over while this one was paused or cut
   *   off after sending found it `delivering`): `answered`, even when `fence` no longer holds;
   * - anything else: `answered` while `fence` holds (checked in the same statement, first in the
   *   transaction).
   * @param fence scale-out: this instance's ownership of the bot at this epoch
   * @returns the outgoing row's id
   * @throws FencedError when `fence` no longer holds and the row is neither `unconfirmed` nor
   * answered (nothing stored; a row left `delivering` becomes `unconfirmed` in the new owner's
   * recovery)
   */
  async settle(out: NewOutgoing, fence?: OwnerFence): Promise<number> {
    const hasParts = out.parts !== undefined;
    if (this.dialect === "mysql") {
      const procs = answerProcedures(this.db);
      if (await procs.has("bots_settle")) {
        // The same statements in one round trip (src/storage/migrations/0014_procedures.ts).
        const row = await procs.call<{ id: unknown; fenced: unknown }>("bots_settle", [
          out.incoming.id,
          out.cost,
          hasParts ? out.parts : null,
          fence?.bot ?? null,
          fence?.owner ?? null,
          fence?.epoch ?? null,
          out.incoming.bot,
          out.incoming.channel,
          out.incoming.thread_key,
          out.incoming.chat_id,
          out.text,
          out.channel_message_id,
          out.model,
          out.prompt_tokens,
          out.completion_tokens,
          out.latency_ms,
          out.created_ms,
        ]);
        if (row) {
          if (fence && Number(row.fenced) === 1) throw new FencedError(fence.bot, fence.epoch);
          return Number(row.id);
        }
        // Not callable (dropped, not allowed): nothing ran; the transaction below does the same.
      }
    }
    return transact(this.db, async (trx) => {
      const res = await this.prepared.run(
        trx,
        `settle|${hasParts}|${fence !== undefined}`,
        (p) => {
          let q = trx
            .updateTable("messages")
            .set({
              status: "answered",
              error: null,
              cost: p("cost"),
              updated_ms: p("now"),
              delivery: null,
              ...(hasParts ? { parts_sent: p("parts") } : {}),
            })
            .where("id", "=", p<number>("id"))
            .where("status", "<>", "answered");
          if (fence) q = q.where((eb) => eb.or([eb("status", "=", "unconfirmed"), fenceHolds(slotFence(p))]));
          return q;
        },
        { cost: out.cost, now: out.created_ms, id: out.incoming.id, ...(hasParts ? { parts: out.parts } : {}), ...(fence ? fenceArgs(fence) : {}) },
      );
      if (Number(res.numAffectedRows) !== 1) {
        const before = await this.storedAnswer(trx, out.incoming.id);
        if (before !== undefined) return before;
        if (fence) throw new FencedError(fence.bot, fence.epoch);
      }
      return insertOutgoing(trx, out, this.prepared);
    });
  }

  /** The id of the answer stored for an `answered` incoming row (the latest), if any. */
  private async storedAnswer(db: Kysely<Schema>, incomingId: number): Promise<number | undefined> {
    const row = await db
      .selectFrom("messages as i")
      .innerJoin("messages as o", (j) => j.onRef("o.reply_to_id", "=", "i.id").on("o.direction", "=", "out"))
      .select((eb) => eb.fn.max("o.id").as("id"))
      .where("i.id", "=", incomingId)
      .where("i.status", "=", "answered")
      .executeTakeFirst();
    return row?.id == null ? undefined : Number(row.id);
  }

  /** Stores a message we sent without changing the incoming one (e.g. the `empty_reply`). */
  async recordOutgoing(out: NewOutgoing): Promise<number> {
    return insertOutgoing(this.db, out, this.prepared);
  }

  /**
   * The dialog of a thread before an incoming message: answered user messages and our answers
   * to messages that came before it, oldest first, at most `limit` turns. Ordered by the
   * incoming message each turn belongs to (its "turn": an answer's `reply_to_id`, a message's own
   * id), because answers are stored after later messages of the same thread may already have
   * been recorded.
   *
   * Reads only the thread's newest rows, not the whole thread: the `limit` + {@link HISTORY_SLACK}
   * newest matching rows by id (the `(bot, thread_key, id)` index, backwards). A turn is never
   * above its row's id, so any row not read (a smaller id than the smallest read, `m`) has a
   * turn below `m`; when the `limit`-th turn among the rows read is at least `m`, those rows hold
   * the answer exactly. Otherwise (more than the slack of answers stored after later messages)
   * the whole thread is read and ordered by the database, as before.
   * @throws RangeError when `limit` is not an integer
   */
  async history(bot: string, threadKey: string, beforeId: number, limit: number): Promise<HistoryTurn[]> {
    if (limit <= 0) return [];
    if (!Number.isSafeInteger(limit)) throw new RangeError(`history limit must be an integer, got ${limit}`);
    const args = { bot, thread_key: threadKey, before: beforeId };
    const read = limit + HISTORY_SLACK;
    // Limits are part of the SQL text, one statement per limit: SQLite prepares a statement with
    // `LIMIT ?` again each time the parameter is bound (it plans by the limit's value).
    const newest = await this.prepared.run<HistoryRow>(
      this.db,
      `historyNewest:${read}`,
      (p) => this.historyQuery(p).orderBy("id", "desc").limit(sql.lit(read)),
      args,
    );
    const turn = (r: HistoryRow) => Number(r.reply_to_id ?? r.id);
    let rows = [...newest.rows].sort((a, b) => turn(b) - turn(a) || Number(b.id) - Number(a.id));
    const smallestId = Number(newest.rows.at(-1)?.id ?? 0);
    if (newest.rows.length < read || turn(rows[limit - 1]!) >= smallestId) rows = rows.slice(0, limit);
    else
      rows = (
        await this.prepared.run<HistoryRow>(
          this.db,
          `historyByTurn:${limit}`,
          (p) => this.historyQuery(p).orderBy(sql`coalesce(reply_to_id, id)`, "desc").orderBy("id", "desc").limit(sql.lit(limit)),
          args,
        )
      ).rows;
    return rows.reverse().map((r) => {
      const images = r.direction === "in" ? imageCount(r.meta) : 0;
      return { role: r.direction === "in" ? "user" : "assistant", text: r.text, created_ms: Number(r.created_ms), ...(images ? { images } : {}) };
    });
  }

  /** The rows of a thread's history before message `before` (see {@link history}), unordered. */
  private historyQuery(p: Slot) {
    return this.db
      .selectFrom("messages")
      .select(["id", "reply_to_id", "direction", "text", "created_ms", "meta"])
      .where("bot", "=", p("bot"))
      .where("thread_key", "=", p("thread_key"))
      .where((eb) =>
        eb.or([
          eb.and([eb("direction", "=", "in"), eb("status", "=", "answered"), eb("id", "<", p<number>("before"))]),
          eb.and([eb("direction", "=", "out"), eb("reply_to_id", "<", p<number>("before"))]),
        ]),
      );
  }

  /**
   * Incoming messages of one thread received in a time window, oldest first (by id); uses the
   * `(bot, thread_key, id)` index. For gathering the parts of a Telegram album.
   * @param fromMs / toMs epoch ms UTC, inclusive
   */
  async inThread(bot: string, threadKey: string, fromMs: number, toMs: number, limit = 100): Promise<MessageRow[]> {
    const rows = await this.db
      .selectFrom("messages")
      .selectAll()
      .where("bot", "=", bot)
      .where("thread_key", "=", threadKey)
      .where("direction", "=", "in")
      .where("created_ms", ">=", fromMs)
      .where("created_ms", "<=", toMs)
      .orderBy("id", "asc")
      .limit(limit)
      .execute();
    return rows.map(normalise);
  }

  /**
   * A user's recent incoming messages, for the spam check (docs/architecture.md, "One message's path"), in one read on the
   * `(bot, user_id, created_ms)` index.
   * @param floodSinceMs epoch ms UTC: messages at or after it are counted (`recent`)
   * @param sameText with `sinceMs` (epoch ms UTC): whether the same text (by {@link textHash})
   * came at or after it (`duplicate`); omitted, `duplicate` is false
   */
  async userActivity(
    bot: string,
    userId: string,
    floodSinceMs: number,
    sameText?: { text: string; sinceMs: number },
  ): Promise<{ recent: number; duplicate: boolean }> {
    const since = sameText ? Math.min(floodSinceMs, sameText.sinceMs) : floodSinceMs;
    const { rows } = await this.prepared.run<{ recent: number; same: number }>(
      this.db,
      `userActivity|${sameText !== undefined}`,
      (p) =>
        this.db
          .selectFrom("messages")
          .select([
            sql<number>`COUNT(CASE WHEN created_ms >= ${p("flood_since")} THEN 1 END)`.as("recent"),
            (sameText ? sql<number>`COUNT(CASE WHEN text_hash = ${p("hash")} AND created_ms >= ${p("same_since")} THEN 1 END)` : sql<number>`0`).as("same"),
          ])
          .where("bot", "=", p("bot"))
          .where("user_id", "=", p("user_id"))
          .where("direction", "=", "in")
          .where("created_ms", ">=", p<number>("since")),
      {
        flood_since: floodSinceMs,
        ...(sameText ? { hash: textHash(sameText.text), same_since: sameText.sinceMs } : {}),
        bot,
        user_id: userId,
        since,
      },
    );
    const row = rows[0];
    return { recent: Number(row?.recent ?? 0), duplicate: Number(row?.same ?? 0) > 0 };
  }

  /**
   * Incoming messages chosen for replay, oldest first (by id, which keeps each thread's order).
   * Uses the `(bot, status, id)` index when bots and statuses are given, the
   * `created_ms` index for a time window, the primary key for ids.
   * @param q.sinceMs / q.untilMs epoch ms UTC, inclusive / exclusive
   */
  async selectIncoming(q: {
    bots?: string[];
    ids?: number[];
    statuses?: IncomingStatus[];
    sinceMs?: number;
    untilMs?: number;
    limit?: number;
  }): Promise<MessageRow[]> {
    let s = this.db.selectFrom("messages").selectAll().where("direction", "=", "in");
    if (q.bots) s = s.where("bot", "in", q.bots.length ? q.bots : [""]);
    if (q.ids) s = s.where("id", "in", q.ids.length ? q.ids : [-1]);
    if (q.statuses) s = s.where("status", "in", q.statuses.length ? q.statuses : ["-" as IncomingStatus]);
    if (q.sinceMs !== undefined) s = s.where("created_ms", ">=", q.sinceMs);
    if (q.untilMs !== undefined) s = s.where("created_ms", "<", q.untilMs);
    s = s.orderBy("id", "asc");
    if (q.limit !== undefined) s = s.limit(q.limit);
    return (await s.execute()).map(normalise);
  }

  /**
   * Ids of the `received` messages of `bots`, oldest first, at most `limit`: read from the
   * `(bot, status, id)` index alone (`received` is an incoming status only), so a sweep that
   * finds them all in hand costs no row reads however long the backlog.
   */
  async receivedIds(bots: string[], limit: number): Promise<Array<{ id: number; bot: string }>> {
    if (!bots.length) return [];
    const rows = await this.db
      .selectFrom("messages")
      .select(["id", "bot"])
      .where("bot", "in", bots)
      .where("status", "=", "received")
      .orderBy("id", "asc")
      .limit(limit)
      .execute();
    return rows.map((r) => ({ id: Number(r.id), bot: r.bot }));
  }

  /**
   * Outgoing messages of a bot in one of `statuses`, oldest first: proactive messages
   * (src/core/proactive.ts) left `pending` or `delivering` by a crash, for recovery. Uses the
   * `(bot, status, id)` index.
   */
  async outgoingInStatus(bot: string, statuses: Array<"pending" | "delivering">): Promise<MessageRow[]> {
    const rows = await this.db
      .selectFrom("messages")
      .selectAll()
      .where("bot", "=", bot)
      .where("status", "in", statuses)
      .where("direction", "=", "out")
      .orderBy("id", "asc")
      .execute();
    return rows.map(normalise);
  }

  /**
   * Message counts since a time, per bot, direction and status (for `bots status`); uses the
   * `created_ms` index.
   * @param sinceMs epoch ms UTC
   */
  async countsSince(sinceMs: number): Promise<Array<{ bot: string; direction: "in" | "out"; status: string; n: number }>> {
    const rows = await this.db
      .selectFrom("messages")
      .select((eb) => ["bot", "direction", "status", eb.fn.countAll<number>().as("n")])
      .where("created_ms", ">=", sinceMs)
      .groupBy(["bot", "direction", "status"])
      .execute();
    return rows.map((r) => ({ bot: r.bot, direction: r.direction, status: r.status, n: Number(r.n) }));
  }

  /**
   * Time of a bot's newest message (incoming in any status, or an outgoing one that was sent),
   * epoch ms UTC, or null. Walks the `(bot, id)` index from the newest row to the first that
   * counts: the newest recorded, which is the newest in time up to clock differences between
   * instances.
   */
  async lastMessageMs(bot: string): Promise<number | null> {
    const row = await this.db
      .selectFrom("messages")
      .select("created_ms")
      .where("bot", "=", bot)
      .where((eb) => eb.or([eb("direction", "=", "in"), eb("status", "=", "sent")]))
      .orderBy("id", "desc")
      .limit(1)
      .executeTakeFirst();
    return row ? Number(row.created_ms) : null;
  }

  /**
   * How many incoming messages of a bot are in each of `statuses`, whatever their age (for
   * `bots status`: waiting, unconfirmed, failed, expired). One COUNT per status on the
   * `(bot, status, id)` index.
   */
  async countByStatus(bot: string, statuses: readonly IncomingStatus[]): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    await Promise.all(
      statuses.map(async (status) => {
        const row = await this.db
          .selectFrom("messages")
          .select((eb) => eb.fn.countAll<number>().as("n"))
          .where("bot", "=", bot)
          .where("status", "=", status)
          .executeTakeFirst();
        out[status] = Number(row?.n ?? 0);
      }),
    );
    return out;
  }

  /** The answer stored for an incoming message, if any. */
  async answerTo(incomingId: number): Promise<MessageRow | undefined> {
    const row = await this.db
      .selectFrom("messages")
      .selectAll()
      .where("reply_to_id", "=", incomingId)
      .where("direction", "=", "out")
      .orderBy("id", "desc")
      .executeTakeFirst();
    return row && normalise(row);
  }
}

/** The answer being delivered in parts stored on an incoming row, if any (`messages.delivery`). */
export function partialAnswer(row: Pick<MessageRow, "delivery">): PartialAnswer | null {
  if (!row.delivery) return null;
  try {
    const a = JSON.parse(row.delivery) as PartialAnswer;
    return typeof a?.text === "string" && typeof a.parts === "number" ? a : null;
  } catch {
    return null;
  }
}

/** mysql2 may return BIGINT columns as strings: make every numeric column a number. */
export function normalise(row: MessageRow): MessageRow {
  const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    ...row,
    id: Number(row.id),
    reply_to_id: num(row.reply_to_id),
    prompt_tokens: num(row.prompt_tokens),
    completion_tokens: num(row.completion_tokens),
    cost: num(row.cost),
    latency_ms: num(row.latency_ms),
    parts_sent: num(row.parts_sent),
    created_ms: Number(row.created_ms),
    updated_ms: Number(row.updated_ms),
  };
}

async function insertOutgoing(db: Kysely<Schema>, out: NewOutgoing, prepared: PreparedQueries): Promise<number> {
  const res = await prepared.run(
    db,
    "insertOutgoing",
    (p) =>
      db.insertInto("messages").values({
        bot: p("bot"),
        channel: p("channel"),
        direction: "out",
        status: "sent",
        thread_key: p("thread_key"),
        chat_id: p("chat_id"),
        user_id: null,
        user_name: null,
        text: p("text"),
        text_hash: null,
        dedupe_key: null,
        channel_message_id: p("channel_message_id"),
        reply_to_id: p<number>("reply_to_id"),
        model: p("model"),
        prompt_tokens: p<number>("prompt_tokens"),
        completion_tokens: p<number>("completion_tokens"),
        cost: p<number>("cost"),
        latency_ms: p<number>("latency_ms"),
        error: null,
        meta: null,
        created_ms: p<number>("created_ms"),
        updated_ms: p<number>("created_ms"),
      }),
    {
      bot: out.incoming.bot,
      channel: out.incoming.channel,
      thread_key: out.incoming.thread_key,
      chat_id: out.incoming.chat_id,
      text: out.text,
      channel_message_id: out.channel_message_id,
      reply_to_id: out.incoming.id,
      model: out.model,
      prompt_tokens: out.prompt_tokens,
      completion_tokens: out.completion_tokens,
      cost: out.cost,
      latency_ms: out.latency_ms,
      created_ms: out.created_ms,
    },
  );
  return Number(res.insertId);
}

/** A fence whose values are slots `fence_bot`, `fence_owner`, `fence_epoch` (see {@link fenceArgs}). */
function slotFence(p: Slot): OwnerFence {
  return { bot: p("fence_bot"), owner: p("fence_owner"), epoch: p<number>("fence_epoch") };
}

/** The arguments of {@link slotFence}'s slots. */
function fenceArgs(f: OwnerFence): Record<string, unknown> {
  return { fence_bot: f.bot, fence_owner: f.owner, fence_epoch: f.epoch };
}

/** How many pictures a stored meta JSON lists under `images`. */
function imageCount(meta: string | null): number {
  if (!meta?.includes('"images"')) return 0;
  const images = decodeMeta(meta).images;
  return Array.isArray(images) ? images.length : 0;
}
