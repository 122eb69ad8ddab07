import type { Kysely, Migration } from "kysely";
import type { DialectHelpers } from "../migrations.js";

/**
 * `posts`: wall posts a bot has seen (VK `wall_post_new`, or fetched with `wall.getById` when a
 * comment arrives first), kept for the comment prompt (`{{post_text}}`) and the deadline feature.
 * One row per (bot, owner_id, post_id).
 */
export function postsMigration({ idType, tableEnd }: DialectHelpers): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("posts")
        .addColumn("id", idType, (c) => c.primaryKey().autoIncrement())
        .addColumn("bot", "varchar(64)", (c) => c.notNull())
        .addColumn("channel", "varchar(8)", (c) => c.notNull())
        .addColumn("owner_id", "varchar(32)", (c) => c.notNull())
        .addColumn("post_id", "varchar(32)", (c) => c.notNull())
        .addColumn("text", "text", (c) => c.notNull())
        .addColumn("posted_ms", "bigint")
        .addColumn("created_ms", "bigint", (c) => c.notNull())
        .addColumn("updated_ms", "bigint", (c) => c.notNull())
        .modifyEnd(tableEnd)
        .execute();
      await db.schema.createIndex("posts_key").unique().on("posts").columns(["bot", "owner_id", "post_id"]).execute();
    },
  };
}
