import { UsageError } from "../errors.js";
import { migrate, openDatabase, redactUrl } from "../storage/db.js";
import type { CliContext } from "./context.js";

/**
 * `bots db migrate`: applies pending migrations and says which. On MySQL/MariaDB it also creates
 * the answer procedures that are missing (migration 0014 leaves them out for a user without
 * CREATE ROUTINE), and says when this user still may not.
 */
export async function migrateCommand(c: CliContext): Promise<void> {
  const database = await openDatabase(c.dbUrl);
  try {
    const applied = await migrate(database);
    let created: string[] = [];
    let refused: string[] = [];
    if (database.dialect === "mysql") {
      const { createProcedures, missingProcedures } = await import("../storage/procedures.js");
      const { isRoutinePrivilegeError } = await import("../storage/migrations/0014_procedures.js");
      const missing = await missingProcedures(database.db);
      try {
        await createProcedures(database.db, missing);
        created = missing;
      } catch (error) {
        if (!isRoutinePrivilegeError(error)) throw error;
        refused = missing;
      }
    }
    if (c.json) c.out(JSON.stringify({ database: database.safeUrl, applied, procedures_created: created, procedures_missing: refused }));
    else {
      c.out(applied.length ? `Applied ${applied.join(", ")} to ${database.safeUrl}` : `Database ${database.safeUrl} is up to date.`);
      if (created.length) c.out(`Created stored procedures ${created.join(", ")}.`);
      if (refused.length)
        c.err(
          `Stored procedures ${refused.join(", ")} are missing and this user may not create them (CREATE ROUTINE privilege): each answer's reservation and settlement then take four round trips instead of one (docs/architecture.md, "Storage").`,
        );
    }
  } finally {
    await database.close();
  }
}

/**
 * `bots db copy --to URL`: copies every table of `--db` (the source) into the empty database at
 * URL, printing each table's row count. Stop the bots first.
 * @throws UsageError without --to; StorageError when the target is not empty or unreachable
 */
export async function copyCommand(c: CliContext, opts: { to?: string }): Promise<void> {
  if (!opts.to) throw new UsageError("COPY_USAGE", "--to URL is required", { hint: "bots db copy --to mysql://user:pass@host:3306/bots" });
  if (opts.to === c.dbUrl) throw new UsageError("COPY_USAGE", "--to is the same database as --db");
  const { copyDatabase } = await import("../storage/copy.js");
  const result = await copyDatabase(c.dbUrl, opts.to, (table, rows) => {
    if (!c.json) c.err(`  ${table}: ${rows} rows`);
  });
  const total = result.tables.reduce((a, t) => a + t.rows, 0);
  if (c.json) c.out(JSON.stringify({ from: redactUrl(c.dbUrl), to: redactUrl(opts.to), tables: result.tables, rows: total }));
  else c.out(`Copied ${total} rows in ${result.tables.length} tables from ${redactUrl(c.dbUrl)} to ${redactUrl(opts.to)}.`);
}
