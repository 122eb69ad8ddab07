import { migrate, openDatabase } from "../storage/db.js";
import type { CliContext } from "./context.js";

/** `bots db migrate`: applies pending migrations and says which. */
export async function migrateCommand(c: CliContext): Promise<void> {
  const database = await openDatabase(c.dbUrl);
  try {
    const applied = await migrate(database);
    if (c.json) c.out(JSON.stringify({ database: database.safeUrl, applied }));
    else c.out(applied.length ? `Applied ${applied.join(", ")} to ${database.safeUrl}` : `Database ${database.safeUrl} is up to date.`);
  } finally {
    await database.close();
  }
}
