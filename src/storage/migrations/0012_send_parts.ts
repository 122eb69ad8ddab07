import type { Kysely, Migration } from "kysely";
import type { DialectHelpers } from "../migrations.js";

/**
 * Answers in parts record what was delivered: `parts_sent` (how many parts went out) and
 * `delivery` (the answer's text and model data while it is sent in parts, JSON), so a retry,
 * recovery or `bots replay --send` sends only the missing parts and the charge follows what was
 * delivered (docs/durability.md).
 */
export function sendPartsMigration(_: DialectHelpers): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema.alterTable("messages").addColumn("parts_sent", "integer").execute();
      await db.schema.alterTable("messages").addColumn("delivery", "text").execute();
    },
  };
}
