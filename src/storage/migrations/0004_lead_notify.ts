import type { Kysely, Migration } from "kysely";
import type { DialectHelpers } from "../migrations.js";

/**
 * Lead e-mail bookkeeping (features.leads): the customer's display name as the channel gave it,
 * how many times the operator e-mail was tried, and the last failure.
 */
export function leadNotify(_d: DialectHelpers): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema.alterTable("leads").addColumn("user_name", "varchar(255)").execute();
      await db.schema
        .alterTable("leads")
        .addColumn("notify_attempts", "integer", (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.alterTable("leads").addColumn("notify_error", "text").execute();
      await db.schema.createIndex("leads_created").on("leads").columns(["bot", "created_ms"]).execute();
    },
  };
}
