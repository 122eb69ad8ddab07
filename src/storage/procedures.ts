import { CompiledQuery, sql, type Kysely } from "kysely";
import { StorageError } from "../errors.js";
import { retryBusy } from "./db.js";
import { storageFault } from "./faults.js";
import { ANSWER_PROCEDURES, createAnswerProcedures } from "./migrations/0014_procedures.js";
import type { Schema } from "./schema.js";

/** A stored procedure of an answer (migration 0014). */
export type AnswerProcedure = "bots_reserve" | "bots_settle";

/**
 * Driver codes of a CALL that ran nothing: the procedure is not there (dropped, or being
 * created again), the user may not execute it, or it has another signature (another version).
 * The caller then runs the same work as a transaction.
 */
const NOT_CALLABLE = new Set(["ER_SP_DOES_NOT_EXIST", "ER_PROCACCESS_DENIED_ERROR", "ER_SP_WRONG_NO_OF_ARGS"]);

/** The `CALL` text of each procedure, `?` for each parameter (mysql2 escapes the values into it). */
const CALLS: Record<AnswerProcedure, string> = {
  bots_reserve: `CALL bots_reserve(${Array(8).fill("?").join(", ")})`,
  bots_settle: `CALL bots_settle(${Array(17).fill("?").join(", ")})`,
};

/**
 * The answer procedures of one MySQL/MariaDB database, as the repositories use them: whether
 * each exists (read once from `information_schema.routines`), and calling one. Shared by the
 * repositories of one Kysely instance ({@link answerProcedures}).
 */
export class AnswerProcedures {
  /** The procedures present, read once; undefined until read, or after a CALL found one gone. */
  private present?: Promise<Set<string>>;

  constructor(private readonly db: Kysely<Schema>) {}

  /**
   * Whether `name` can be called: it is listed in `information_schema.routines` of the current
   * database (which lists only routines the user has some privilege on). Read once; a read that
   * fails is not kept (the next call reads again).
   * @throws what the read throws (the database is unreachable)
   */
  async has(name: AnswerProcedure): Promise<boolean> {
    this.present ??= sql<{ name: string }>`select routine_name as name from information_schema.routines
      where routine_schema = database() and routine_type = 'PROCEDURE' and routine_name in ('bots_reserve', 'bots_settle')`
      .execute(this.db)
      .then((r) => new Set(r.rows.map((x) => String(x.name).toLowerCase())));
    const present = this.present;
    try {
      return (await present).has(name);
    } catch (error) {
      if (this.present === present) this.present = undefined;
      throw error;
    }
  }

  /**
   * Calls `name` with `args` in one round trip, again after a deadlock or lock wait (the
   * procedure rolled its transaction back and signalled the error again, so an attempt applies
   * nothing; `retryBusy` in src/storage/db.ts, as `transact` does for a transaction).
   * @returns the procedure's result row, or undefined when the procedure could not be called
   * and ran nothing (missing, not allowed, another signature): the caller then runs the
   * transaction instead, and the next {@link has} reads the catalogue again
   * @throws what the database throws (a connection lost during the CALL leaves it unknown
   * whether it committed, as a lost COMMIT does); StorageError `DB_PROCEDURE_RESULT` when the
   * result is not one row
   */
  async call<R extends Record<string, unknown>>(name: AnswerProcedure, args: readonly unknown[]): Promise<R | undefined> {
    let res: Awaited<ReturnType<Kysely<Schema>["executeQuery"]>>;
    try {
      res = await retryBusy(() => this.db.executeQuery(CompiledQuery.raw(CALLS[name], [...args])));
    } catch (error) {
      const code = storageFault(error)?.driverCode;
      if (code && NOT_CALLABLE.has(code)) {
        this.present = undefined;
        return undefined;
      }
      throw error;
    }
    // mysql2 answers a CALL with one array per result set the procedure produced, then the
    // CALL's own OK packet: `[[{…row of the final SELECT}], ResultSetHeader]`. Kysely's MySQL
    // driver hands that array on as `rows` (it is not an OK packet itself).
    const sets = res.rows as unknown[];
    const first = Array.isArray(sets) && Array.isArray(sets[0]) ? (sets[0] as unknown[]) : undefined;
    if (first?.length !== 1 || typeof first[0] !== "object" || first[0] === null)
      throw new StorageError("DB_PROCEDURE_RESULT", `CALL ${name} returned ${JSON.stringify(sets)?.slice(0, 200)}, not one row`);
    return first[0] as R;
  }
}

const shared = new WeakMap<Kysely<Schema>, AnswerProcedures>();

/** The {@link AnswerProcedures} of a MySQL/MariaDB database, one per Kysely instance. */
export function answerProcedures(db: Kysely<Schema>): AnswerProcedures {
  let p = shared.get(db);
  if (!p) {
    p = new AnswerProcedures(db);
    shared.set(db, p);
  }
  return p;
}

/**
 * The answer procedures missing from a MySQL/MariaDB database (for `bots db migrate`: a user
 * given the CREATE ROUTINE privilege after migration 0014 ran without it), by name.
 */
export async function missingProcedures(db: Kysely<Schema>): Promise<string[]> {
  const r = await sql<{ name: string }>`select routine_name as name from information_schema.routines
    where routine_schema = database() and routine_type = 'PROCEDURE'`.execute(db);
  const have = new Set(r.rows.map((x) => String(x.name).toLowerCase()));
  return Object.keys(ANSWER_PROCEDURES).filter((n) => !have.has(n));
}

/**
 * Creates the answer procedures named (from {@link missingProcedures}). Processes already
 * running keep what they found at their first answer; they use the procedures after a restart.
 * @throws what the database throws (still no privilege: `isRoutinePrivilegeError` of
 * src/storage/migrations/0014_procedures.ts is true)
 */
export async function createProcedures(db: Kysely<Schema>, names: readonly string[]): Promise<void> {
  await createAnswerProcedures(db as Kysely<any>, names, false);
}
