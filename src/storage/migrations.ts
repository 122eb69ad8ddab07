import { sql, type Kysely, type Migration, type MigrationProvider } from "kysely";
import type { Dialect } from "./db.js";
import { postsMigration } from "./migrations/0002_posts.js";
import { leadNotify } from "./migrations/0004_lead_notify.js";
import { recoveryMigration } from "./migrations/0005_recovery.js";
import { opsMigration } from "./migrations/0006_ops.js";
import { coachingMigration } from "./migrations/0008_coaching.js";
import { scaleMigration } from "./migrations/0009_scale.js";
import { instanceTtlMigration } from "./migrations/0011_instance_ttl.js";
import { sendPartsMigration } from "./migrations/0012_send_parts.js";
import { toolEffectsMigration } from "./migrations/0013_tool_effects.js";
import { proceduresMigration } from "./migrations/0014_procedures.js";
import { settleAgainMigration } from "./migrations/0015_settle_again.js";
import { lighterIndexesMigration } from "./migrations/0016_lighter_indexes.js";

/**
 * The migrations, in order. One set serves both dialects; the few differences (auto-increment
 * ids, MySQL's table options) are decided by `dialect`.
 */
export function migrations(dialect: Dialect): Record<string, Migration> {
  const d = dialectHelpers(dialect);
  // Later migrations live in ./migrations/, one file each; register them here in order.
  return {
    "0001_initial": initial(d),
    "0002_posts": postsMigration(d),
    "0004_lead_notify": leadNotify(d),
    "0005_recovery": recoveryMigration(d),
    "0006_ops": opsMigration(d),
    "0008_coaching": coachingMigration(d),
    "0009_scale": scaleMigration(d),
    "0011_instance_ttl": instanceTtlMigration(d),
    "0012_send_parts": sendPartsMigration(d),
    "0013_tool_effects": toolEffectsMigration(d),
    "0014_procedures": proceduresMigration(d),
    "0015_settle_again": settleAgainMigration(d),
    "0016_lighter_indexes": lighterIndexesMigration(d),
  };
}

/** Column types and table options that differ between the dialects. */
export interface DialectHelpers {
  dialect: Dialect;
  /** Type for auto-increment ids and columns referring to them. */
  idType: "bigint" | "integer";
  /** Table options: utf8mb4 on MySQL, nothing on SQLite. */
  tableEnd: ReturnType<typeof sql>;
}

/** Helpers for writing one migration for both dialects. */
export function dialectHelpers(dialect: Dialect): DialectHelpers {
  return {
    dialect,
    idType: dialect === "mysql" ? "bigint" : "integer",
    // MySQL needs utf8mb4 for emoji and Cyrillic; SQLite has no table options.
    tableEnd: dialect === "mysql" ? sql`ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci` : sql``,
  };
}

function initial({ idType, tableEnd }: DialectHelpers): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("messages")
        .addColumn("id", idType, (c) => c.primaryKey().autoIncrement())
        .addColumn("bot", "varchar(64)", (c) => c.notNull())
        .addColumn("channel", "varchar(8)", (c) => c.notNull())
        .addColumn("direction", "varchar(3)", (c) => c.notNull())
        .addColumn("status", "varchar(16)", (c) => c.notNull())
        .addColumn("thread_key", "varchar(191)", (c) => c.notNull())
        .addColumn("chat_id", "varchar(64)", (c) => c.notNull())
        .addColumn("user_id", "varchar(64)")
        .addColumn("user_name", "varchar(255)")
        .addColumn("text", "text", (c) => c.notNull())
        .addColumn("text_hash", "varchar(40)")
        .addColumn("dedupe_key", "varchar(191)")
        .addColumn("channel_message_id", "varchar(128)")
        .addColumn("reply_to_id", idType)
        .addColumn("model", "varchar(128)")
        .addColumn("prompt_tokens", "integer")
        .addColumn("completion_tokens", "integer")
        .addColumn("cost", "bigint")
        .addColumn("latency_ms", "integer")
        .addColumn("error", "text")
        .addColumn("meta", "text")
        .addColumn("created_ms", "bigint", (c) => c.notNull())
        .addColumn("updated_ms", "bigint", (c) => c.notNull())
        .modifyEnd(tableEnd)
        .execute();
      await db.schema.createIndex("messages_dedupe").unique().on("messages").columns(["bot", "dedupe_key"]).execute();
      await db.schema.createIndex("messages_thread").on("messages").columns(["bot", "thread_key", "id"]).execute();
      await db.schema.createIndex("messages_user").on("messages").columns(["bot", "user_id", "created_ms"]).execute();
      await db.schema.createIndex("messages_status").on("messages").columns(["bot", "status", "created_ms"]).execute();
      await db.schema.createIndex("messages_created").on("messages").columns(["created_ms"]).execute();
      await db.schema.createIndex("messages_reply_to").on("messages").columns(["reply_to_id"]).execute();

      await db.schema
        .createTable("balance_accounts")
        .addColumn("account", "varchar(64)", (c) => c.primaryKey())
        .addColumn("balance", "bigint", (c) => c.notNull().defaultTo(0))
        .addColumn("created_ms", "bigint", (c) => c.notNull())
        .addColumn("updated_ms", "bigint", (c) => c.notNull())
        .modifyEnd(tableEnd)
        .execute();

      await db.schema
        .createTable("balance_ledger")
        .addColumn("id", idType, (c) => c.primaryKey().autoIncrement())
        .addColumn("account", "varchar(64)", (c) => c.notNull())
        .addColumn("delta", "bigint", (c) => c.notNull())
        .addColumn("balance_after", "bigint", (c) => c.notNull())
        .addColumn("reason", "varchar(16)", (c) => c.notNull())
        .addColumn("message_id", idType)
        .addColumn("ref_id", idType)
        .addColumn("note", "varchar(255)")
        .addColumn("created_ms", "bigint", (c) => c.notNull())
        .modifyEnd(tableEnd)
        .execute();
      await db.schema.createIndex("ledger_account").on("balance_ledger").columns(["account", "id"]).execute();
      await db.schema.createIndex("ledger_ref").unique().on("balance_ledger").column("ref_id").execute();
      await db.schema.createIndex("ledger_message").on("balance_ledger").column("message_id").execute();

      await db.schema
        .createTable("cursors")
        .addColumn("bot", "varchar(64)", (c) => c.notNull())
        .addColumn("name", "varchar(191)", (c) => c.notNull())
        .addColumn("value", "varchar(255)", (c) => c.notNull())
        .addColumn("updated_ms", "bigint", (c) => c.notNull())
        .addPrimaryKeyConstraint("cursors_pk", ["bot", "name"])
        .modifyEnd(tableEnd)
        .execute();

      await db.schema
        .createTable("leases")
        .addColumn("name", "varchar(191)", (c) => c.primaryKey())
        .addColumn("holder", "varchar(191)", (c) => c.notNull())
        .addColumn("expires_ms", "bigint", (c) => c.notNull())
        .modifyEnd(tableEnd)
        .execute();

      await db.schema
        .createTable("leads")
        .addColumn("id", idType, (c) => c.primaryKey().autoIncrement())
        .addColumn("bot", "varchar(64)", (c) => c.notNull())
        .addColumn("thread_key", "varchar(191)", (c) => c.notNull())
        .addColumn("chat_id", "varchar(64)", (c) => c.notNull())
        .addColumn("user_id", "varchar(64)")
        .addColumn("name", "varchar(255)")
        .addColumn("phone", "varchar(64)")
        .addColumn("email", "varchar(255)")
        .addColumn("note", "text")
        .addColumn("dialog", "text")
        .addColumn("message_id", idType)
        .addColumn("notified_ms", "bigint")
        .addColumn("created_ms", "bigint", (c) => c.notNull())
        .addColumn("updated_ms", "bigint", (c) => c.notNull())
        .modifyEnd(tableEnd)
        .execute();
      await db.schema.createIndex("leads_thread").on("leads").columns(["bot", "thread_key"]).execute();
      await db.schema.createIndex("leads_notified").on("leads").columns(["notified_ms"]).execute();
    },
  };
}

/** Kysely provider over {@link migrations}. */
export function migrationProvider(dialect: Dialect): MigrationProvider {
  return { getMigrations: async () => migrations(dialect) };
}
