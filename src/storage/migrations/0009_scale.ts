import type { Kysely, Migration } from "kysely";
import type { DialectHelpers } from "../migrations.js";

/**
 * Scale-out: `instances` (one row per running `bots start`, with a heartbeat in the
 * database's own clock) and `bot_owners` (which instance owns each bot, with a fencing epoch that
 * grows at every change of owner).
 */
export function scaleMigration({ tableEnd }: DialectHelpers): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("instances")
        .addColumn("id", "varchar(191)", (c) => c.primaryKey())
        .addColumn("host", "varchar(255)", (c) => c.notNull())
        .addColumn("pid", "integer", (c) => c.notNull())
        .addColumn("bots", "text", (c) => c.notNull())
        .addColumn("started_ms", "bigint", (c) => c.notNull())
        .addColumn("heartbeat_ms", "bigint", (c) => c.notNull())
        .modifyEnd(tableEnd)
        .execute();
      await db.schema
        .createTable("bot_owners")
        .addColumn("bot", "varchar(64)", (c) => c.primaryKey())
        .addColumn("owner", "varchar(191)")
        .addColumn("epoch", "bigint", (c) => c.notNull())
        .addColumn("changed_ms", "bigint", (c) => c.notNull())
        .modifyEnd(tableEnd)
        .execute();
    },
  };
}
