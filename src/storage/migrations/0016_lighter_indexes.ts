import type { Kysely, Migration } from "kysely";
import type { DialectHelpers } from "../migrations.js";

/**
 * Fewer index pages written per message. Every commit writes each page it changed to the WAL
 * (SQLite) or the redo log (InnoDB), and an index entry that moves (a status change) changes
 * two: `npm run bench:pipeline` counted 38 SQLite pages written per answered message before,
 * 27 after.
 *
 * - `messages_status` `(bot, status, created_ms)` goes: `messages_bot_status_id`
 *   `(bot, status, id)` (migration 0006) serves the same lookups (a status of a bot, in id
 *   order), and every status change moved an entry in both.
 * - SQLite only (MySQL has no partial indexes): `messages_reply_to`, `messages_dedupe`,
 *   `messages_user` and `ledger_ref` hold only rows whose column is set. Incoming messages have
 *   no `reply_to_id`, answers no `dedupe_key` and no `user_id`, reservations and top-ups no
 *   `ref_id`; every lookup on these columns compares them with a value, which SQLite's planner
 *   knows implies `IS NOT NULL` (test/storage/indexes.test.ts checks each plan). Uniqueness is
 *   unchanged: NULLs never conflicted.
 */
export function lighterIndexesMigration({ dialect }: DialectHelpers): Migration {
  return {
    async up(db: Kysely<any>) {
      const drop = db.schema.dropIndex("messages_status");
      // MySQL names the table of an index (`DROP INDEX … ON …`); SQLite does not.
      await (dialect === "mysql" ? drop.on("messages") : drop).execute();
      if (dialect !== "sqlite") return;
      const partial = async (name: string, table: string, columns: string[], set: string, unique: boolean) => {
        await db.schema.dropIndex(name).execute();
        const ix = db.schema.createIndex(name).on(table).columns(columns);
        await (unique ? ix.unique() : ix).where(set, "is not", null).execute();
      };
      await partial("messages_reply_to", "messages", ["reply_to_id"], "reply_to_id", false);
      await partial("messages_dedupe", "messages", ["bot", "dedupe_key"], "dedupe_key", true);
      await partial("messages_user", "messages", ["bot", "user_id", "created_ms"], "user_id", false);
      await partial("ledger_ref", "balance_ledger", ["ref_id"], "ref_id", true);
    },
  };
}
