import type { Kysely, Migration } from "kysely";
import type { DialectHelpers } from "../migrations.js";

/**
 * `tool_effects`: one row per tool call that changed something, keyed by the incoming message,
 * the tool and a hash of its normalised arguments. The unique key makes a looping or retried
 * model, or a replay of the same message, find the earlier effect instead of repeating it.
 */
export function toolEffectsMigration({ idType, tableEnd }: DialectHelpers): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("tool_effects")
        .addColumn("id", idType, (c) => c.primaryKey().autoIncrement())
        .addColumn("bot", "varchar(64)", (c) => c.notNull())
        .addColumn("message_id", idType, (c) => c.notNull())
        .addColumn("tool", "varchar(64)", (c) => c.notNull())
        .addColumn("args_hash", "varchar(64)", (c) => c.notNull())
        .addColumn("ref", idType)
        .addColumn("created_ms", "bigint", (c) => c.notNull())
        .modifyEnd(tableEnd)
        .execute();
      await db.schema.createIndex("tool_effects_call").unique().on("tool_effects").columns(["bot", "message_id", "tool", "args_hash"]).execute();
    },
  };
}
