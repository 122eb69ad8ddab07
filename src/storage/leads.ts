import type { Kysely, Selectable } from "kysely";
import { scrubSecrets } from "../secrets.js";
import { isUniqueViolation, transact } from "./db.js";
import type { LeadsTable, Schema } from "./schema.js";
import { priorEffect, recordEffect, type ToolEffectKey } from "./tool-effects.js";

/** A stored lead; times are epoch ms UTC. */
export type LeadRow = Selectable<LeadsTable>;

/** One turn of a lead's dialog as stored in `leads.dialog` (JSON array). */
export interface DialogTurn {
  role: "user" | "assistant";
  text: string;
  /** Epoch ms UTC. */
  at_ms: number;
}

/** The contact fields of a lead; undefined leaves a stored value as it is. */
export interface LeadFields {
  name?: string | null;
  phone?: string | null;
  email?: string | null;
  note?: string | null;
}

/** What {@link LeadsRepo.upsert} stores. */
export interface LeadInput extends LeadFields {
  bot: string;
  thread_key: string;
  chat_id: string;
  user_id: string | null;
  user_name: string | null;
  /** The dialog so far, oldest first. */
  dialog: DialogTurn[];
  /** The incoming message being answered. */
  message_id: number | null;
  /** The tool call saving it (`save_lead`); a call seen before for the message changes nothing. */
  effect?: ToolEffectKey;
}

/** Leads of `features.leads` (docs/architecture.md, "Storage": `leads`): one per bot and thread key. */
export class LeadsRepo {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly now: () => number = Date.now,
  ) {}

  /** The lead of a thread, if one was saved. */
  async forThread(bot: string, threadKey: string): Promise<LeadRow | undefined> {
    const row = await this.db
      .selectFrom("leads")
      .selectAll()
      .where("bot", "=", bot)
      .where("thread_key", "=", threadKey)
      .orderBy("id", "desc")
      .executeTakeFirst();
    return row && normaliseLead(row);
  }

  /** One lead by id. */
  async get(id: number): Promise<LeadRow | undefined> {
    const row = await this.db.selectFrom("leads").selectAll().where("id", "=", id).executeTakeFirst();
    return row && normaliseLead(row);
  }

  /**
   * Saves the lead of a thread: inserts it, or updates the thread's lead (a repeat call). Given
   * fields replace stored ones; when a contact field changes, `notified_ms` is cleared and
   * `updated_ms` moves so the operator gets the new details (an unchanged repeat keeps both: a
   * mail in flight stays valid). With `effect`, the key is stored in the same transaction, and a
   * key stored before returns the lead as it is with `repeated` set, writing nothing.
   * @returns the lead after the write and whether it needs an e-mail
   */
  async upsert(input: LeadInput): Promise<{ lead: LeadRow; created: boolean; changed: boolean; repeated: boolean }> {
    try {
      return await this.upsertOnce(input);
    } catch (error) {
      // A concurrent twin of the same call committed first: this one finds its key now.
      if (input.effect && isUniqueViolation(error)) return this.upsertOnce(input);
      throw error;
    }
  }

  private upsertOnce(input: LeadInput): Promise<{ lead: LeadRow; created: boolean; changed: boolean; repeated: boolean }> {
    const at = this.now();
    const fields = pick(input);
    return transact(this.db, async (trx) => {
      const prior = input.effect ? await priorEffect(trx, input.effect) : undefined;
      if (prior?.ref != null) {
        const lead = await trx.selectFrom("leads").selectAll().where("id", "=", prior.ref).executeTakeFirst();
        if (lead) return { lead: normaliseLead(lead), created: false, changed: false, repeated: true };
      }
      const effect = prior ? undefined : input.effect;
      const existing = await trx
        .selectFrom("leads")
        .selectAll()
        .where("bot", "=", input.bot)
        .where("thread_key", "=", input.thread_key)
        .orderBy("id", "desc")
        .executeTakeFirst();
      if (!existing) {
        const res = await trx
          .insertInto("leads")
          .values({
            bot: input.bot,
            thread_key: input.thread_key,
            chat_id: input.chat_id,
            user_id: input.user_id,
            user_name: input.user_name,
            name: fields.name ?? null,
            phone: fields.phone ?? null,
            email: fields.email ?? null,
            note: fields.note ?? null,
            dialog: JSON.stringify(input.dialog),
            message_id: input.message_id,
            notified_ms: null,
            notify_error: null,
            created_ms: at,
            updated_ms: at,
          })
          .executeTakeFirstOrThrow();
        const lead = await trx.selectFrom("leads").selectAll().where("id", "=", Number(res.insertId)).executeTakeFirstOrThrow();
        if (effect) await recordEffect(trx, effect, Number(lead.id), at);
        return { lead: normaliseLead(lead), created: true, changed: true, repeated: false };
      }
      const changed = (Object.keys(fields) as Array<keyof LeadFields>).some((k) => (fields[k] ?? null) !== existing[k]);
      await trx
        .updateTable("leads")
        .set({
          ...fields,
          user_name: input.user_name ?? existing.user_name,
          dialog: JSON.stringify(input.dialog),
          message_id: input.message_id ?? existing.message_id,
          // `updated_ms` is the version an e-mail in flight is marked against (markNotified).
          ...(changed ? { updated_ms: at, notified_ms: null, notify_attempts: 0, notify_error: null } : {}),
        })
        .where("id", "=", existing.id)
        .execute();
      const lead = await trx.selectFrom("leads").selectAll().where("id", "=", existing.id).executeTakeFirstOrThrow();
      if (effect) await recordEffect(trx, effect, Number(lead.id), at);
      return { lead: normaliseLead(lead), created: false, changed, repeated: false };
    });
  }

  /**
   * Leads of a bot whose operator e-mail has not gone out yet and that have every field of
   * `complete` (a lead with only a shared phone waits for the model to save the rest), oldest first.
   */
  async unnotified(bot: string, complete: ReadonlyArray<keyof LeadFields> = [], limit = 50): Promise<LeadRow[]> {
    let q = this.db.selectFrom("leads").selectAll().where("bot", "=", bot).where("notified_ms", "is", null);
    for (const f of complete) q = q.where(f, "is not", null);
    const rows = await q.orderBy("id").limit(limit).execute();
    return rows.map(normaliseLead);
  }

  /**
   * Marks the e-mail of a lead as sent, unless the lead changed since `version` (its
   * `updated_ms` when the mail was built): then the new details still need a mail.
   */
  async markNotified(id: number, version: number): Promise<boolean> {
    const res = await this.db
      .updateTable("leads")
      .set({ notified_ms: this.now(), notify_error: null })
      .where("id", "=", id)
      .where("updated_ms", "=", version)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  /** Records a failed e-mail attempt (the lead stays unnotified). */
  async markFailed(id: number, error: string): Promise<void> {
    await this.db
      .updateTable("leads")
      .set((eb) => ({ notify_attempts: eb("notify_attempts", "+", 1), notify_error: scrubSecrets(error).slice(0, 2000) }))
      .where("id", "=", id)
      .execute();
  }

  /** Leads of a bot created in `[sinceMs, untilMs)`, oldest first. */
  async createdBetween(bot: string, sinceMs: number, untilMs: number): Promise<LeadRow[]> {
    const rows = await this.db
      .selectFrom("leads")
      .selectAll()
      .where("bot", "=", bot)
      .where("created_ms", ">=", sinceMs)
      .where("created_ms", "<", untilMs)
      .orderBy("id")
      .execute();
    return rows.map(normaliseLead);
  }
}

/** The stored dialog of a lead (empty when none or unreadable). */
export function leadDialog(lead: Pick<LeadRow, "dialog">): DialogTurn[] {
  try {
    const v = JSON.parse(lead.dialog ?? "[]") as unknown;
    return Array.isArray(v) ? (v as DialogTurn[]) : [];
  } catch {
    return [];
  }
}

function pick(f: LeadFields): LeadFields {
  const out: LeadFields = {};
  for (const k of ["name", "phone", "email", "note"] as const) if (f[k] !== undefined) out[k] = f[k];
  return out;
}

/** mysql2 may return BIGINT columns as strings: make numeric columns numbers. */
function normaliseLead(row: LeadRow): LeadRow {
  const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    ...row,
    id: Number(row.id),
    message_id: num(row.message_id),
    notified_ms: num(row.notified_ms),
    notify_attempts: Number(row.notify_attempts ?? 0),
    created_ms: Number(row.created_ms),
    updated_ms: Number(row.updated_ms),
  };
}
