import type { Kysely, Migration } from "kysely";
import type { DialectHelpers } from "../migrations.js";

/**
 * Each instance stores its own `--lease-ttl` (ms), so `bots status` and the other instances judge
 * its heartbeat by its own TTL, and dead rows can be pruned.
 */
export function instanceTtlMigration(_: DialectHelpers): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema
        .alterTable("instances")
        .addColumn("ttl_ms", "bigint", (c) => c.notNull().defaultTo(15_000))
        .execute();
    },
  };
}
