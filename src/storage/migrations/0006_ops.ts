import type { Kysely, Migration } from "kysely";
import type { DialectHelpers } from "../migrations.js";

/**
 * `bots dialogs`: a bot's messages newest first (`(bot, id)`), so the conversation list reads
 * the newest rows of one bot instead of grouping all of them; and newest first within a status
 * (`(bot, status, id)`) for `--status failed`.
 */
export function opsMigration(_d: DialectHelpers): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema.createIndex("messages_bot_id").on("messages").columns(["bot", "id"]).execute();
      await db.schema.createIndex("messages_bot_status_id").on("messages").columns(["bot", "status", "id"]).execute();
    },
  };
}
