import type { Kysely, Migration } from "kysely";
import type { DialectHelpers } from "../migrations.js";

/** features.coaching: users, goals, the check-in log, pauses and delivery claims (docs/coaching.md). */
export function coachingMigration({ idType, tableEnd }: DialectHelpers): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("coaching_users")
        .addColumn("bot", "varchar(64)", (c) => c.notNull())
        .addColumn("user_id", "varchar(64)", (c) => c.notNull())
        .addColumn("chat_id", "varchar(64)", (c) => c.notNull())
        .addColumn("thread_key", "varchar(191)", (c) => c.notNull())
        .addColumn("name", "varchar(255)")
        .addColumn("timezone", "varchar(64)", (c) => c.notNull())
        .addColumn("day_starts_at", "integer", (c) => c.notNull())
        .addColumn("remind_at", "integer")
        .addColumn("status", "varchar(16)", (c) => c.notNull())
        .addColumn("step", "varchar(32)")
        .addColumn("draft", "text")
        .addColumn("profile", "text")
        .addColumn("created_ms", "bigint", (c) => c.notNull())
        .addColumn("updated_ms", "bigint", (c) => c.notNull())
        .addPrimaryKeyConstraint("coaching_users_pk", ["bot", "user_id"])
        .modifyEnd(tableEnd)
        .execute();
      await db.schema
        .createTable("coaching_goals")
        .addColumn("id", idType, (c) => c.primaryKey().autoIncrement())
        .addColumn("bot", "varchar(64)", (c) => c.notNull())
        .addColumn("user_id", "varchar(64)", (c) => c.notNull())
        .addColumn("title", "varchar(255)", (c) => c.notNull())
        .addColumn("kind", "varchar(8)", (c) => c.notNull())
        .addColumn("target", "integer", (c) => c.notNull())
        .addColumn("status", "varchar(16)", (c) => c.notNull())
        .addColumn("created_ms", "bigint", (c) => c.notNull())
        .addColumn("updated_ms", "bigint", (c) => c.notNull())
        .modifyEnd(tableEnd)
        .execute();
      await db.schema.createIndex("coaching_goals_user").on("coaching_goals").columns(["bot", "user_id", "id"]).execute();
      await db.schema
        .createTable("coaching_checkins")
        .addColumn("id", idType, (c) => c.primaryKey().autoIncrement())
        .addColumn("bot", "varchar(64)", (c) => c.notNull())
        .addColumn("user_id", "varchar(64)", (c) => c.notNull())
        .addColumn("goal_id", idType, (c) => c.notNull())
        .addColumn("day", "varchar(10)", (c) => c.notNull())
        .addColumn("points", "integer", (c) => c.notNull())
        .addColumn("source", "varchar(16)", (c) => c.notNull())
        .addColumn("note", "text")
        .addColumn("created_ms", "bigint", (c) => c.notNull())
        .modifyEnd(tableEnd)
        .execute();
      await db.schema.createIndex("coaching_checkins_user").on("coaching_checkins").columns(["bot", "user_id", "day"]).execute();
      await db.schema.createIndex("coaching_checkins_goal").on("coaching_checkins").columns(["goal_id", "day"]).execute();
      await db.schema
        .createTable("coaching_pauses")
        .addColumn("id", idType, (c) => c.primaryKey().autoIncrement())
        .addColumn("bot", "varchar(64)", (c) => c.notNull())
        .addColumn("user_id", "varchar(64)", (c) => c.notNull())
        .addColumn("from_day", "varchar(10)", (c) => c.notNull())
        .addColumn("until_day", "varchar(10)")
        .addColumn("created_ms", "bigint", (c) => c.notNull())
        .modifyEnd(tableEnd)
        .execute();
      await db.schema.createIndex("coaching_pauses_user").on("coaching_pauses").columns(["bot", "user_id"]).execute();
      await db.schema
        .createTable("coaching_deliveries")
        .addColumn("id", idType, (c) => c.primaryKey().autoIncrement())
        .addColumn("bot", "varchar(64)", (c) => c.notNull())
        .addColumn("user_id", "varchar(64)", (c) => c.notNull())
        .addColumn("kind", "varchar(16)", (c) => c.notNull())
        .addColumn("day", "varchar(10)", (c) => c.notNull())
        .addColumn("status", "varchar(16)", (c) => c.notNull())
        .addColumn("message_id", idType)
        .addColumn("error", "text")
        .addColumn("created_ms", "bigint", (c) => c.notNull())
        .addColumn("updated_ms", "bigint", (c) => c.notNull())
        .modifyEnd(tableEnd)
        .execute();
      await db.schema.createIndex("coaching_deliveries_claim").unique().on("coaching_deliveries").columns(["bot", "user_id", "kind", "day"]).execute();
      await db.schema.createIndex("coaching_deliveries_created").on("coaching_deliveries").columns(["bot", "created_ms"]).execute();
    },
  };
}
