import { existsSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { CompiledQuery, Kysely, Migrator, MysqlDialect, type QueryResult, SqliteDialect, sql, type Transaction } from "kysely";
import { sleep } from "../lib/retry.js";
import { StorageError } from "../errors.js";
import { ConnectionGate, classifyingDialect, endLeftoverTransaction, isBusy, isUniqueViolation, toDatabaseError } from "./faults.js";
import { migrationProvider, migrations } from "./migrations.js";
import { newWatch, QueryObserver } from "./observe.js";
import { registerDirect } from "./prepared.js";
import type { Schema } from "./schema.js";

/** The two supported SQL dialects. */
export type Dialect = "sqlite" | "mysql";

/** An open database: the Kysely instance and what it talks to. */
export interface Database {
  db: Kysely<Schema>;
  dialect: Dialect;
  /** The URL with any password replaced by `***`, safe to print. */
  safeUrl: string;
  /** Every statement's outcome at the driver (for `/healthz`, `bots_database_up`). */
  observer: QueryObserver;
  close(): Promise<void>;
}

/**
 * SQLite: WAL pages written before they are copied into the database file (a checkpoint, run by
 * the commit that reaches the count; SQLite's default is 1,000). A checkpoint writes each page
 * once however often it changed since the last one, and syncs the file: at 27 pages per answered message (bench:pipeline) the default
 * checkpointed every 37 messages. 10,000 pages (about 40 MiB of WAL) made bench:peer's CPU per
 * message 1.40 and 1.36 ms against 1.49 and 1.45 ms (ours alone, two pairs of runs, 2026-12-06).
 */
export const WAL_CHECKPOINT_PAGES = 10_000;
/** SQLite: the WAL file is cut back to this size when a checkpoint empties it (it keeps its size otherwise), bytes. */
const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;

/** Options of {@link openDatabase}. */
export interface OpenOptions {
  /** MySQL pool size. @defaultValue `connectionLimit` in the URL, else 10 */
  poolSize?: number;
  /** SQLite busy timeout in ms: how long a writer waits for another process. @defaultValue 10000 */
  busyTimeoutMs?: number;
  /**
   * Open only a database `bots` already made: a SQLite file that is not there is not created
   * (nor its folder), and a MySQL database without the `bots` tables is refused. For commands
   * that only read. @defaultValue false
   * @throws StorageError `DB_MISSING`
   */
  mustExist?: boolean;
}

export { DEFAULT_DATABASE_URL } from "./url.js";

/** Replaces the password in a database URL with `***`. */
export function redactUrl(url: string): string {
  return url.replace(/^(mysql:\/\/[^:/@]+:)[^@]*@/, "$1***@");
}

/**
 * Opens a database by URL: `sqlite:PATH` (relative to the working directory; `sqlite::memory:`
 * for a private in-memory one) or `mysql://user:pass@host:3306/db?connectionLimit=10`. SQLite
 * files and their folder are created on first use, in WAL mode with a busy timeout so several
 * processes can share one file. mysql2 is imported only when a MySQL URL is used.
 * @throws StorageError when the URL is malformed or the server cannot be reached
 */
export async function openDatabase(url: string, options: OpenOptions = {}): Promise<Database> {
  const safeUrl = redactUrl(url);
  if (url.startsWith("sqlite:")) {
    const { SQLite, nativeBinding } = await sqliteDriver();
    let file = url.slice("sqlite:".length);
    if (file.startsWith("//")) file = file.slice(2);
    if (!file) throw new StorageError("DB_URL_INVALID", `database URL ${safeUrl} names no file`, { hint: "use sqlite:data/bots.db" });
    if (options.mustExist && file !== ":memory:" && !existsSync(file)) throw new StorageError("DB_MISSING", `no database at ${path.resolve(file)}`);
    let conn;
    try {
      if (file !== ":memory:" && !options.mustExist) mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
      conn = new SQLite(file, { timeout: options.busyTimeoutMs ?? 10_000, fileMustExist: options.mustExist === true, nativeBinding });
      conn.pragma("journal_mode = WAL");
      conn.pragma("synchronous = NORMAL");
      conn.pragma("foreign_keys = ON");
      conn.pragma(`wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`);
      conn.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
    } catch (cause) {
      throw new StorageError("DB_UNAVAILABLE", `cannot open SQLite database ${file}: ${(cause as Error).message}`, {
        cause,
        hint: "check the path and its permissions",
      });
    }
    // The observer (health) sees the driver's own errors; the classification outside it turns them into DatabaseError.
    const observer = new QueryObserver();
    const statements = new SqliteStatements(conn, observer);
    const gate = new ConnectionGate();
    const db = new Kysely<Schema>({ dialect: classifyingDialect(new SqliteDialect({ database: statements }), { sqlite: conn, gate }) });
    // A transaction left open by a rollback that failed: Kysely's next connection ends it first.
    const runNow = <R>(query: CompiledQuery) => (conn.inTransaction ? undefined : statements.execute<R>(query));
    registerDirect(db, (query) => {
      if (gate.free) return runNow(query);
      return gate.acquire().then(() => {
        try {
          return runNow(query);
        } finally {
          gate.release();
        }
      });
    });
    // The queries of a transaction that `transact` runs, on the connection it holds: never waiting for it.
    const held = new Kysely<Schema>({ dialect: classifyingDialect(new SqliteDialect({ database: statements }), {}) });
    registerDirect(held, (query) => statements.execute(query));
    sqliteTransactions.set(db, (fn) => sqliteTransaction(gate, conn, statements, held, fn));
    return { db, dialect: "sqlite", safeUrl, observer, close: () => db.destroy() };
  }
  if (url.startsWith("mysql://") || url.startsWith("mariadb://")) {
    const { createPool } = await import("mysql2");
    let parsed: URL;
    try {
      parsed = new URL(url.replace(/^mariadb:/, "mysql:"));
    } catch (cause) {
      throw new StorageError("DB_URL_INVALID", `database URL ${safeUrl} is malformed`, { cause, hint: "use mysql://user:pass@host:3306/db" });
    }
    const limit = options.poolSize ?? Number(parsed.searchParams.get("connectionLimit") ?? 10);
    const pool = createPool({
      host: parsed.hostname,
      port: Number(parsed.port || 3306),
      user: decodeURIComponent(parsed.username),
      password: decodeURIComponent(parsed.password),
      database: decodeURIComponent(parsed.pathname.slice(1)),
      connectionLimit: limit,
      charset: "utf8mb4",
      timezone: "Z",
      connectTimeout: 5000,
      // BIGINT columns hold epoch ms and hundredths: well inside 2^53, so plain numbers are exact.
      supportBigNumbers: true,
      bigNumberStrings: false,
    });
    // A process paused (SIGSTOP, GC, VM freeze) inside a transaction keeps its row locks, and
    // every other instance's claim and reserve would wait on them. The server ends such a
    // transaction: MariaDB after IDLE_TRANSACTION_S idle in it; MySQL, which has no such
    // variable, when the connection is idle for MYSQL_WAIT_S (idle pool connections it closes
    // are dropped by the pool). The paused process finds its connection gone when it wakes and
    // writes nothing (its transaction was rolled back).
    pool.on("connection", (conn) => {
      conn.query(
        `SET SESSION idle_transaction_timeout = ${IDLE_TRANSACTION_S}, SESSION innodb_lock_wait_timeout = ${LOCK_WAIT_S}`,
        (error: { errno?: number } | null) => {
          // 1193: unknown system variable (MySQL).
          if (error?.errno === 1193)
            conn.query(`SET SESSION wait_timeout = ${MYSQL_WAIT_S}, SESSION innodb_lock_wait_timeout = ${LOCK_WAIT_S}`, () => undefined);
        },
      );
    });
    const observer = new QueryObserver();
    const db = new Kysely<Schema>({ dialect: classifyingDialect(observer.wrap(new MysqlDialect({ pool })), {}) });
    try {
      await sql`select 1`.execute(db);
    } catch (cause) {
      await db.destroy().catch(() => undefined);
      throw new StorageError("DB_UNAVAILABLE", `cannot reach database ${safeUrl}: ${(cause as Error).message || (cause as { code?: string }).code}`, {
        cause,
        hint: "is the MySQL/MariaDB server running, and are the URL's user, password and database right?",
      });
    }
    if (options.mustExist) {
      const tables = await sql<{
        n: number;
      }>`select count(*) as n from information_schema.tables where table_schema = database() and table_name = 'kysely_migration'`.execute(db);
      if (!Number(tables.rows[0]?.n)) {
        await db.destroy().catch(() => undefined);
        throw new StorageError("DB_MISSING", `database ${safeUrl} has no bots tables`);
      }
    }
    return { db, dialect: "mysql", safeUrl, observer, close: () => db.destroy() };
  }
  throw new StorageError("DB_URL_INVALID", `unsupported database URL ${safeUrl}`, { hint: "use sqlite:PATH or mysql://user:pass@host:3306/db" });
}

/**
 * better-sqlite3 and the path of its compiled addon (`build/Release/better_sqlite3.node` in its
 * package, where its install puts it). scripts/bundle.mjs bundles better-sqlite3's JavaScript,
 * which then gets the addon by this path instead of the `bindings` package's search (a dozen
 * places, starting next to the bundle, where it is not). When the addon is elsewhere (a debug
 * build), the package is loaded from node_modules as it is, and finds the addon itself.
 */
async function sqliteDriver(): Promise<{ SQLite: typeof import("better-sqlite3"); nativeBinding?: string }> {
  const require = createRequire(import.meta.url);
  let addon: string | undefined;
  try {
    addon = path.join(path.dirname(require.resolve("better-sqlite3/package.json")), "build/Release/better_sqlite3.node");
  } catch {
    // Not resolvable from here: the import below fails with the usual message.
  }
  if (addon && existsSync(addon)) return { SQLite: (await import("better-sqlite3")).default, nativeBinding: addon };
  return { SQLite: require("better-sqlite3") as typeof import("better-sqlite3") };
}

type Statement = import("better-sqlite3").Statement;
/** What Kysely's SQLite driver calls on a prepared statement. */
type CachedStatement = Pick<Statement, "reader" | "all" | "run" | "iterate">;

/**
 * A better-sqlite3 connection as Kysely's SQLite dialect uses it (`prepare`, `close`), with each
 * distinct SQL text prepared once (Kysely's SQLite driver prepares on every query, which was the
 * largest cost per message in bench/pipeline; bounded: the oldest statements are dropped past
 * `max` distinct texts), and every statement run reported to the {@link QueryObserver} with the
 * driver's own error, then thrown as a classified {@link DatabaseError}. {@link execute} runs a
 * compiled query at once, as Kysely's SQLite connection would, for the direct statements of
 * src/storage/prepared.ts and {@link sqliteTransaction}. Each runs while its caller holds the
 * connection (the {@link ConnectionGate}, Kysely's queries included), so a cached statement is
 * never in use twice.
 */
class SqliteStatements {
  private readonly cache = new Map<string, CachedStatement>();
  /** The connection's transaction as its statements showed it (one connection). */
  private readonly watch = newWatch();

  constructor(
    private readonly conn: import("better-sqlite3").Database,
    private readonly observer: QueryObserver,
    private readonly max = 500,
  ) {}

  close(): void {
    this.conn.close();
  }

  /**
   * The statement of `sqlText`, prepared once.
   * @throws DatabaseError when SQLite cannot prepare it
   */
  prepare(sqlText: string): CachedStatement {
    let stmt = this.cache.get(sqlText);
    if (stmt) {
      // Refresh its place so the most used statements stay.
      this.cache.delete(sqlText);
    } else {
      stmt = this.observed(sqlText, this.prepareNew(sqlText));
      if (this.cache.size >= this.max) this.cache.delete(this.cache.keys().next().value!);
    }
    this.cache.set(sqlText, stmt);
    return stmt;
  }

  /**
   * Runs a compiled query now; its result is what Kysely's SQLite connection returns.
   * @throws DatabaseError
   */
  execute<R>(query: CompiledQuery): QueryResult<R> {
    const stmt = this.prepare(query.sql);
    if (stmt.reader) return { rows: stmt.all(query.parameters) as R[] };
    const { changes, lastInsertRowid } = stmt.run(query.parameters);
    return { numAffectedRows: BigInt(changes), insertId: BigInt(lastInsertRowid), rows: [] };
  }

  private prepareNew(sqlText: string): CachedStatement {
    try {
      return rowsAsObjects(this.conn.prepare(sqlText), sqlText);
    } catch (error) {
      this.observer.failedToPrepare(sqlText, error);
      throw toDatabaseError(error);
    }
  }

  /** Reports each run of `stmt` and classifies what it throws. */
  private observed(sqlText: string, stmt: CachedStatement): CachedStatement {
    const { observer, watch } = this;
    const run = <T>(execute: () => T): T => {
      try {
        return observer.runSync(watch, sqlText, execute);
      } catch (error) {
        throw toDatabaseError(error);
      }
    };
    return {
      reader: stmt.reader,
      all: ((...params: unknown[]) => run(() => stmt.all(...params))) as Statement["all"],
      run: ((...params: unknown[]) => run(() => stmt.run(...params))) as Statement["run"],
      // Streamed reads (none on the hot path) are classified by the boundary around the driver.
      iterate: ((...params: unknown[]) => stmt.iterate(...params)) as Statement["iterate"],
    };
  }
}

/**
 * A reading statement whose columns are all named in its SQL text (no `*`), returning its rows
 * as objects built here from better-sqlite3's arrays (`raw` mode): better-sqlite3 makes each row
 * object by setting its columns one by one by name, which cost about as much as reading the rows
 * (a history read of 36 rows: 67 µs as objects, 40 µs as arrays made objects here). The objects
 * are the same: the columns in their order, a later column of the same name replacing an earlier
 * one. A statement with `*` keeps better-sqlite3's objects: its columns may change when another
 * process alters the table and SQLite prepares it again.
 */
function rowsAsObjects(stmt: Statement, sqlText: string): CachedStatement {
  if (!stmt.reader || sqlText.includes("*")) return stmt;
  const names = stmt.columns().map((c) => c.name);
  const toObject = (values: unknown[]): Record<string, unknown> => {
    const row: Record<string, unknown> = {};
    for (let c = 0; c < names.length; c++) row[names[c]!] = values[c];
    return row;
  };
  stmt.raw(true);
  return {
    reader: true,
    all: ((...params: unknown[]) => (stmt.all(...params) as unknown[][]).map(toObject)) as Statement["all"],
    run: stmt.run.bind(stmt),
    iterate: function* (...params: unknown[]) {
      for (const values of stmt.iterate(...params) as IterableIterator<unknown[]>) yield toObject(values);
    } as Statement["iterate"],
  };
}

/**
 * Applies pending migrations. Cheap when nothing is pending (one read), and safe when several
 * processes start at once: MySQL uses the migrator's lock, SQLite retries while another process
 * holds the write lock.
 * @returns names of the migrations applied now
 * @throws StorageError when a migration fails
 */
export async function migrate(database: Database): Promise<string[]> {
  const all = Object.keys(migrations(database.dialect));
  try {
    const rows = await database.db
      .selectFrom("kysely_migration" as any)
      .select("name" as any)
      .execute();
    const done = new Set(rows.map((r) => (r as { name: string }).name));
    if (all.every((m) => done.has(m))) return [];
  } catch {
    // No migration table yet: fall through to the migrator.
  }
  const migrator = new Migrator({ db: database.db, provider: migrationProvider(database.dialect) });
  for (let attempt = 1; ; attempt++) {
    const { error, results } = await migrator.migrateToLatest();
    if (!error) return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
    // Another process migrating at the same moment: SQLite refuses our lock, or our stale
    // snapshot makes us repeat its DDL ("duplicate column", "already exists", "no such index"
    // for an index it dropped) or, for a migration with no DDL on this dialect (0014 on
    // SQLite), its record of the migration (a duplicate name in kysely_migration). SQLite DDL
    // is transactional, so our attempt rolled back whole; read the state again and retry.
    const message = String((error as Error)?.message);
    const repeated = /duplicate column|already exists|no such index/i.test(message) || (isUniqueViolation(error) && /kysely_migration/.test(message));
    if (attempt < 8 && (isBusy(error) || repeated)) {
      await sleep(50 * attempt);
      continue;
    }
    throw new StorageError("DB_MIGRATION_FAILED", `migration failed on ${database.safeUrl}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Runs `fn` in a transaction, restarting it when the database reports a deadlock or a busy lock
 * (InnoDB picks a victim among concurrent transactions and asks it to restart; SQLite may refuse
 * a lock upgrade). Each attempt is a whole new transaction, so nothing is applied twice.
 * @throws the last error after `attempts` tries, or at once for any other error
 */
export async function transact<T>(db: Kysely<Schema>, fn: (trx: Transaction<Schema>) => Promise<T>, attempts = 8): Promise<T> {
  const direct = sqliteTransactions.get(db);
  return retryBusy(() => (direct ? (direct(fn as (trx: Kysely<Schema>) => Promise<unknown>) as Promise<T>) : db.transaction().execute(fn)), attempts);
}

/** The {@link sqliteTransaction} of each SQLite database opened here. */
const sqliteTransactions = new WeakMap<Kysely<Schema>, (fn: (trx: Kysely<Schema>) => Promise<unknown>) => Promise<unknown>>();

/**
 * One SQLite transaction as Kysely's would run it, with less in between: once `transact` holds
 * the connection (the {@link ConnectionGate}, so nothing else runs on it meanwhile), BEGIN,
 * COMMIT or ROLLBACK and every prepared statement of `fn` (src/storage/prepared.ts) run at once
 * on it, other queries of `fn` through `held`, a Kysely instance on the same connection that
 * never waits for it. Kysely's transactions cost about as much again as the statements in them
 * (bench/pipeline). A failure rolls back (unless SQLite ended the transaction itself:
 * SQLITE_FULL, SQLITE_IOERR…) and is thrown; a rollback that fails on a live transaction throws
 * its own error, and the next holder of the connection ends that transaction first.
 * @throws DatabaseError, or what `fn` throws
 */
async function sqliteTransaction<T>(
  gate: ConnectionGate,
  conn: Pick<import("better-sqlite3").Database, "inTransaction" | "exec">,
  statements: SqliteStatements,
  held: Kysely<Schema>,
  fn: (trx: Kysely<Schema>) => Promise<T>,
): Promise<T> {
  await gate.acquire();
  try {
    endLeftoverTransaction(conn);
    statements.execute(BEGIN);
    try {
      const result = await fn(held);
      statements.execute(COMMIT);
      return result;
    } catch (error) {
      if (conn.inTransaction) {
        try {
          statements.execute(ROLLBACK);
        } catch (rollbackError) {
          if (conn.inTransaction) throw rollbackError;
        }
      }
      throw error;
    }
  } finally {
    gate.release();
  }
}

const BEGIN = CompiledQuery.raw("begin");
const COMMIT = CompiledQuery.raw("commit");
const ROLLBACK = CompiledQuery.raw("rollback");

/**
 * Runs `op`, one whole transaction (a Kysely transaction, or a CALL of a procedure that runs one
 * and rolls it back on any error: src/storage/migrations/0014_procedures.ts), again when the
 * database reports a deadlock or a busy lock, after a short random pause growing with each try.
 * @throws the last error after `attempts` tries, or at once for any other error
 */
export async function retryBusy<T>(op: () => Promise<T>, attempts = 8): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (error) {
      if (attempt >= attempts || !isBusy(error)) throw error;
      await sleep(Math.random() * 20 * attempt);
    }
  }
}

/** Seconds a MySQL/MariaDB transaction may sit idle (its process paused) before the server ends it. */
export const IDLE_TRANSACTION_S = 5;
/** MySQL (not MariaDB): seconds a connection may sit idle, in a transaction or not, before the server closes it. */
export const MYSQL_WAIT_S = 30;
/** Seconds a statement waits for a row lock before failing (retried by {@link transact}); the server default is 50. */
export const LOCK_WAIT_S = 10;

export { DatabaseError, isBusy, isRetryableStorageError, isUniqueViolation, storageFault } from "./faults.js";
