import type { Kysely, Migration } from "kysely";
import type { DialectHelpers } from "../migrations.js";

/**
 * Durable answers (recovery at start): one row per recovery run of a bot, so `bots status` can
 * show when the last one ran and what it did.
 */
export function recoveryMigration({ idType, tableEnd }: DialectHelpers): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("recoveries")
        .addColumn("id", idType, (c) => c.primaryKey().autoIncrement())
        .addColumn("bot", "varchar(64)", (c) => c.notNull())
        .addColumn("holder", "varchar(191)", (c) => c.notNull())
        .addColumn("resumed", "integer", (c) => c.notNull())
        .addColumn("refunded", "integer", (c) => c.notNull())
        .addColumn("expired", "integer", (c) => c.notNull())
        .addColumn("unconfirmed", "integer", (c) => c.notNull())
        .addColumn("confirmed", "integer", (c) => c.notNull())
        .addColumn("started_ms", "bigint", (c) => c.notNull())
        .addColumn("finished_ms", "bigint", (c) => c.notNull())
        .modifyEnd(tableEnd)
        .execute();
      await db.schema.createIndex("recoveries_bot").on("recoveries").columns(["bot", "id"]).execute();
    },
  };
}
