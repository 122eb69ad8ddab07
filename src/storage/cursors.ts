import type { Kysely } from "kysely";
import { isUniqueViolation } from "./db.js";
import type { Schema } from "./schema.js";

/**
 * Per-bot polling state (docs/architecture.md, "Storage": `cursors`): a named string per bot, e.g. the 2GIS cursor
 * `2gis:branch:<branch_id>` holding the `dateCreated` of the newest review done on that branch.
 */
export class CursorsRepo {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly now: () => number = Date.now,
  ) {}

  /** The stored value, or undefined when the cursor was never set. */
  async get(bot: string, name: string): Promise<string | undefined> {
    const row = await this.db.selectFrom("cursors").select("value").where("bot", "=", bot).where("name", "=", name).executeTakeFirst();
    return row?.value;
  }

  /**
   * Stores a value (insert or replace). Portable upsert: update, else insert, and if another
   * process inserted meanwhile, update once more.
   * @param value at most 255 characters
   */
  async set(bot: string, name: string, value: string): Promise<void> {
    const t = this.now();
    const update = () => this.db.updateTable("cursors").set({ value, updated_ms: t }).where("bot", "=", bot).where("name", "=", name).executeTakeFirst();
    if (Number((await update()).numUpdatedRows) === 1) return;
    try {
      await this.db.insertInto("cursors").values({ bot, name, value, updated_ms: t }).execute();
    } catch (error) {
      // The row exists (MySQL counts an unchanged row as 0 updated, or another process inserted).
      if (!isUniqueViolation(error)) throw error;
      await update();
    }
  }

  /** Every cursor of a bot, by name. */
  async list(bot: string): Promise<Array<{ name: string; value: string; updated_ms: number }>> {
    const rows = await this.db.selectFrom("cursors").select(["name", "value", "updated_ms"]).where("bot", "=", bot).orderBy("name").execute();
    return rows.map((r) => ({ ...r, updated_ms: Number(r.updated_ms) }));
  }
}
