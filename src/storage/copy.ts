import type { Kysely } from "kysely";
import { StorageError } from "../errors.js";
import { migrate, openDatabase, type Database } from "./db.js";

/** Rows copied per table. */
export interface CopyResult {
  tables: Array<{ table: string; rows: number }>;
}

/** Kysely's own bookkeeping: the target has it from its own migration run. */
const SKIP = new Set(["kysely_migration", "kysely_migration_lock"]);

/** Values per INSERT: under SQLite's 32,766 bound parameters and MySQL's 65,535. */
const MAX_PARAMS = 8000;

/**
 * Copies every table of the database at `fromUrl` into the one at `toUrl` (SQLite → MySQL or
 * back): both are migrated to the same schema first, then each table is read in keyset pages
 * (by `id` where it has one) and inserted with its ids kept, so `reply_to_id`, ledger
 * `message_id` / `ref_id` and the next auto-increment id stay right. Tables are discovered from
 * the source, so tables of later migrations are copied too.
 *
 * Stop `bots start` and cron runs first: rows written meanwhile may be missed. A copy that dies
 * half-way leaves the target partly filled; the next run refuses it (drop and recreate the
 * target, then run again).
 * @param onTable called after each table with its row count
 * @throws StorageError `COPY_TARGET_NOT_EMPTY` when a target table already has rows (nothing is
 * written), `COPY_TABLE_MISSING` when the target lacks a table of the source, or what the
 * databases throw
 */
export async function copyDatabase(fromUrl: string, toUrl: string, onTable?: (table: string, rows: number) => void): Promise<CopyResult> {
  const from = await openDatabase(fromUrl);
  let to: Database | undefined;
  try {
    to = await openDatabase(toUrl);
    await migrate(from);
    await migrate(to);
    const src = from.db as unknown as Kysely<any>;
    const dst = to.db as unknown as Kysely<any>;
    const tables = (await src.introspection.getTables()).filter((t) => !SKIP.has(t.name)).sort((a, b) => a.name.localeCompare(b.name));
    const targetTables = new Set((await dst.introspection.getTables()).map((t) => t.name));
    for (const t of tables) {
      if (!targetTables.has(t.name))
        throw new StorageError("COPY_TABLE_MISSING", `target ${to.safeUrl} has no table ${t.name}`, {
          hint: "both databases must be opened by the same version of bots",
        });
      const n = await dst
        .selectFrom(t.name)
        .select((eb) => eb.fn.countAll().as("n"))
        .executeTakeFirst();
      if (Number(n?.n ?? 0) > 0)
        throw new StorageError("COPY_TARGET_NOT_EMPTY", `target table ${t.name} in ${to.safeUrl} already has rows; nothing copied`, {
          hint: "copy into a new, empty database (drop and recreate it after a failed copy)",
        });
    }
    const result: CopyResult = { tables: [] };
    for (const t of tables) {
      const columns = t.columns.map((c) => c.name);
      const pageSize = Math.max(1, Math.floor(MAX_PARAMS / columns.length));
      let copied = 0;
      if (columns.includes("id")) {
        let after: number | null = null;
        for (;;) {
          let q = src.selectFrom(t.name).select(columns).orderBy("id").limit(pageSize);
          if (after !== null) q = q.where("id", ">", after);
          const rows = (await q.execute()) as Array<Record<string, unknown>>;
          if (!rows.length) break;
          await dst.insertInto(t.name).values(rows).execute();
          copied += rows.length;
          after = Number(rows[rows.length - 1]!.id);
        }
      } else {
        // Small tables without an id (accounts, cursors, leases): read at once.
        const rows = (await src.selectFrom(t.name).select(columns).execute()) as Array<Record<string, unknown>>;
        for (let i = 0; i < rows.length; i += pageSize)
          await dst
            .insertInto(t.name)
            .values(rows.slice(i, i + pageSize))
            .execute();
        copied = rows.length;
      }
      result.tables.push({ table: t.name, rows: copied });
      onTable?.(t.name, copied);
    }
    return result;
  } finally {
    await from.close();
    await to?.close();
  }
}
