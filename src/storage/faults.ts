import type BetterSqlite3 from "better-sqlite3";
import type { DatabaseConnection, Dialect, Driver, QueryCompiler, QueryResult, TransactionSettings } from "kysely";
import { StorageError } from "../errors.js";

/**
 * How a database failure bears on what to do next:
 * - `busy`: another writer holds a lock, or the server picked this transaction as a deadlock
 *   victim; the whole transaction may be tried again at once ({@link transact} does).
 * - `unavailable`: the database cannot record anything now (unreachable, connection lost, disk
 *   full, read-only, I/O error, cannot open the file); nothing of the failed statement is kept,
 *   so the same write is tried again once it answers.
 * - `duplicate`: a unique index refused the row (it is there already).
 * - `permanent`: anything else (a corrupt file, a bad statement); trying again will not help.
 */
export type StorageFaultKind = "busy" | "unavailable" | "duplicate" | "permanent";

/** Codes of {@link DatabaseError}, one per kind of cause. */
export type StorageFaultCode = "DB_BUSY" | "DB_UNREACHABLE" | "DB_FULL" | "DB_READ_ONLY" | "DB_IO" | "DB_DUPLICATE" | "DB_CORRUPT" | "DB_QUERY";

const KIND: Record<StorageFaultCode, StorageFaultKind> = {
  DB_BUSY: "busy",
  DB_UNREACHABLE: "unavailable",
  DB_FULL: "unavailable",
  DB_READ_ONLY: "unavailable",
  DB_IO: "unavailable",
  DB_DUPLICATE: "duplicate",
  DB_CORRUPT: "permanent",
  DB_QUERY: "permanent",
};

/**
 * A failure of the database driver (better-sqlite3 or mysql2), classified once at the storage
 * boundary: every query, transaction statement and connection of an opened database throws this
 * instead of the driver's own error. `code` says what happened, `kind` what to do about it,
 * `driverCode` is the driver's code (`SQLITE_FULL`, `ER_LOCK_DEADLOCK`, `ECONNREFUSED`…); the
 * driver's error is the `cause`.
 */
export class DatabaseError extends StorageError {
  declare readonly code: StorageFaultCode;
  readonly kind: StorageFaultKind;
  readonly driverCode: string;
  constructor(code: StorageFaultCode, driverCode: string, message: string, cause: unknown) {
    super(code, message, { cause });
    this.kind = KIND[code];
    this.driverCode = driverCode;
  }
}

/** MySQL/MariaDB and Node socket codes meaning the server cannot be reached or the connection is gone. */
const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "PROTOCOL_CONNECTION_LOST",
  "PROTOCOL_SEQUENCE_TIMEOUT",
  "PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR",
  "PROTOCOL_ENQUEUE_AFTER_QUIT",
  "ER_CON_COUNT_ERROR",
  "ER_TOO_MANY_USER_CONNECTIONS",
  "ER_SERVER_SHUTDOWN",
  "ER_CONNECTION_KILLED",
  "ER_NET_READ_ERROR",
  "ER_NET_READ_INTERRUPTED",
  "ER_NET_ERROR_ON_WRITE",
  "ER_NET_WRITE_INTERRUPTED",
  "ER_NET_PACKETS_OUT_OF_ORDER",
  "CR_SERVER_GONE_ERROR",
  "CR_SERVER_LOST",
  "CR_CONNECTION_ERROR",
  "CR_CONN_HOST_ERROR",
]);
const BUSY = new Set(["ER_LOCK_DEADLOCK", "ER_LOCK_WAIT_TIMEOUT", "ER_LOCK_ABORTED"]);
const FULL = new Set(["ENOSPC", "EDQUOT", "ER_RECORD_FILE_FULL", "ER_DISK_FULL", "ER_OUT_OF_RESOURCES", "ER_OUTOFMEMORY"]);
const READ_ONLY = new Set([
  "EROFS",
  "ER_OPTION_PREVENTS_STATEMENT",
  "ER_READ_ONLY_MODE",
  "ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION",
  "ER_READ_ONLY_TRANSACTION",
]);
const DUPLICATE = new Set(["SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY", "ER_DUP_ENTRY"]);

/** The {@link StorageFaultCode} of a driver code (`SQLITE_*` primary and extended codes, mysql2 and Node codes). */
function codeOf(driverCode: string): StorageFaultCode {
  if (DUPLICATE.has(driverCode)) return "DB_DUPLICATE";
  if (BUSY.has(driverCode) || /^SQLITE_(BUSY|LOCKED)/.test(driverCode)) return "DB_BUSY";
  if (UNREACHABLE.has(driverCode)) return "DB_UNREACHABLE";
  if (FULL.has(driverCode) || /^SQLITE_(FULL|NOMEM)/.test(driverCode)) return "DB_FULL";
  if (READ_ONLY.has(driverCode) || /^SQLITE_READONLY/.test(driverCode)) return "DB_READ_ONLY";
  if (driverCode === "EIO" || /^SQLITE_(IOERR|CANTOPEN|PROTOCOL|PERM|AUTH)/.test(driverCode)) return "DB_IO";
  if (/^SQLITE_(CORRUPT|NOTADB)/.test(driverCode)) return "DB_CORRUPT";
  return "DB_QUERY";
}

/**
 * Classifies any thrown value as a database failure: a {@link DatabaseError} as it is, a raw
 * driver error (`SQLITE_*`, `ER_*`, `PROTOCOL_*`, `CR_*` codes, e.g. from a connection used
 * outside Kysely) mapped the same way as at the boundary. Errors that are not from the database (a
 * `FencedError`, a `BalanceError`, a channel error) give undefined.
 */
export function storageFault(error: unknown): DatabaseError | undefined {
  if (error instanceof DatabaseError) return error;
  if (error instanceof StorageError) return undefined;
  const e = error as { code?: unknown; message?: unknown; errno?: unknown } | null;
  if (!e || typeof e !== "object" || typeof e.code !== "string") return undefined;
  // Only codes that name the database: a bare ECONNREFUSED may be any remote API's.
  if (!/^(SQLITE_|ER_|PROTOCOL_|CR_)/.test(e.code)) return undefined;
  return toDatabaseError(error);
}

/** Wraps a driver error (already a DatabaseError: as it is). */
export function toDatabaseError(error: unknown): DatabaseError {
  if (error instanceof DatabaseError) return error;
  const e = error as { code?: unknown; message?: unknown; errors?: Array<{ code?: unknown }> } | null;
  // Node's dual-stack connect fails with an AggregateError whose own code may be missing.
  const driverCode = typeof e?.code === "string" ? e.code : typeof e?.errors?.[0]?.code === "string" ? e.errors[0].code : "UNKNOWN";
  const text = typeof e?.message === "string" && e.message ? e.message : driverCode;
  return new DatabaseError(codeOf(driverCode), driverCode, `${driverCode}: ${text}`.replace(/^(\w+): \1: /, "$1: "), error);
}

/**
 * The retry policy of every storage caller, decided from the classified code in one place: true
 * when the failed write may succeed if tried again later (busy locks, an unreachable or full or
 * read-only database); false for duplicates, permanent failures and errors that are not the
 * database's (a fenced write is never retried).
 */
export function isRetryableStorageError(error: unknown): boolean {
  const kind = storageFault(error)?.kind;
  return kind === "busy" || kind === "unavailable";
}

/** True for a lock the database could not take now (SQLite busy/locked, InnoDB deadlock or lock wait). */
export function isBusy(error: unknown): boolean {
  return storageFault(error)?.kind === "busy";
}

/** True when an insert hit a unique index (SQLite or MySQL). */
export function isUniqueViolation(error: unknown): boolean {
  return storageFault(error)?.kind === "duplicate";
}

/** What {@link classifyingDialect} needs to know of the underlying connection. */
export interface BoundaryOptions {
  /**
   * SQLite: the better-sqlite3 connection, to know whether it is inside a transaction. SQLite ends a transaction by itself on some errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM…):
   * the rollback that follows is then skipped instead of failing with "cannot rollback - no
   * transaction is active" and hiding the real error; and a connection found still inside a
   * transaction when it is taken (a rollback that failed) is rolled back first, so no later
   * statement runs inside a transaction that never commits.
   */
  sqlite?: Pick<BetterSqlite3.Database, "inTransaction" | "exec">;
  /**
   * SQLite: one holder of the connection at a time, Kysely's or a direct statement's
   * (src/storage/prepared.ts), first come first served.
   */
  gate?: ConnectionGate;
}

/**
 * Ends a transaction left open on a SQLite connection by a rollback that failed, before anything
 * else runs in it (its writes never committed; what it was for failed and was reported).
 * @throws DatabaseError when the rollback fails
 */
export function endLeftoverTransaction(sqlite: Pick<BetterSqlite3.Database, "inTransaction" | "exec">): void {
  if (!sqlite.inTransaction) return;
  try {
    sqlite.exec("ROLLBACK");
  } catch (error) {
    throw toDatabaseError(error);
  }
}

/**
 * The one connection of a SQLite database, held by one user at a time in the order they asked:
 * Kysely (a query, a transaction) or a direct statement. A holder hands it to the next waiting
 * one when it releases it.
 */
export class ConnectionGate {
  private held = false;
  private readonly waiting: Array<() => void> = [];

  /** True while nothing holds the connection (then nothing waits for it either). */
  get free(): boolean {
    return !this.held;
  }

  /** Resolves once the caller holds the connection; it must call {@link release} after. */
  acquire(): Promise<void> {
    if (!this.held) {
      this.held = true;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /** Ends the caller's hold: the next waiting caller holds it now. */
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.held = false;
  }
}

/**
 * Wraps a Kysely dialect so that everything its driver throws — connecting, every query,
 * `begin`, `commit`, `rollback` — is a classified {@link DatabaseError}, and a transaction whose
 * rollback fails because the connection or the transaction is gone already surfaces the error
 * that made it roll back (the database dropped the transaction with it) instead of the
 * rollback's. A rollback failing on a live transaction is thrown (classified).
 */
export function classifyingDialect(inner: Dialect, o: BoundaryOptions): Dialect {
  return {
    createAdapter: () => inner.createAdapter(),
    createQueryCompiler: () => inner.createQueryCompiler(),
    createIntrospector: (db) => inner.createIntrospector(db),
    createDriver: () => new ClassifyingDriver(inner.createDriver(), o),
  };
}

class ClassifyingDriver implements Driver {
  private readonly inner = new WeakMap<DatabaseConnection, DatabaseConnection>();
  /** The wrapper of each driver connection, made once: a pooled connection is taken again and again. */
  private readonly wrappers = new WeakMap<DatabaseConnection, DatabaseConnection>();

  constructor(
    private readonly driver: Driver,
    private readonly o: BoundaryOptions,
  ) {}

  private raw(conn: DatabaseConnection): DatabaseConnection {
    return this.inner.get(conn) ?? conn;
  }

  async init(): Promise<void> {
    await this.driver.init().catch(rethrow);
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const gate = this.o.gate;
    if (gate) await gate.acquire();
    let conn: DatabaseConnection;
    try {
      conn = await this.driver.acquireConnection();
    } catch (error) {
      gate?.release();
      throw toDatabaseError(error);
    }
    if (this.o.sqlite) {
      try {
        endLeftoverTransaction(this.o.sqlite);
      } catch (error) {
        await this.releaseConnection(conn);
        throw error;
      }
    }
    let wrapped: DatabaseConnection | undefined = this.wrappers.get(conn);
    if (wrapped) return wrapped;
    wrapped = {
      async executeQuery<R>(compiled: Parameters<DatabaseConnection["executeQuery"]>[0]): Promise<QueryResult<R>> {
        try {
          return await conn.executeQuery<R>(compiled);
        } catch (error) {
          throw toDatabaseError(error);
        }
      },
      async *streamQuery<R>(compiled: Parameters<DatabaseConnection["streamQuery"]>[0], chunkSize?: number) {
        try {
          yield* conn.streamQuery<R>(compiled, chunkSize);
        } catch (error) {
          throw toDatabaseError(error);
        }
      },
    };
    this.inner.set(wrapped, conn);
    this.wrappers.set(conn, wrapped);
    return wrapped;
  }

  async beginTransaction(conn: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    await this.driver.beginTransaction(this.raw(conn), settings).catch(rethrow);
  }

  async commitTransaction(conn: DatabaseConnection): Promise<void> {
    await this.driver.commitTransaction(this.raw(conn)).catch(rethrow);
  }

  async rollbackTransaction(conn: DatabaseConnection): Promise<void> {
    const sqlite = this.o.sqlite;
    // SQLite rolled the transaction back itself (SQLITE_FULL, SQLITE_IOERR…): nothing to undo.
    if (sqlite && !sqlite.inTransaction) return;
    try {
      await this.driver.rollbackTransaction(this.raw(conn));
    } catch (error) {
      const e = toDatabaseError(error);
      // The transaction is gone with its connection (MySQL) or ended (SQLite): rolled back.
      if (sqlite ? !sqlite.inTransaction : e.kind === "unavailable") return;
      throw e;
    }
  }

  async savepoint(conn: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]): Promise<void> {
    await this.driver.savepoint!(this.raw(conn), name, compile).catch(rethrow);
  }

  async rollbackToSavepoint(conn: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]): Promise<void> {
    await this.driver.rollbackToSavepoint!(this.raw(conn), name, compile).catch(rethrow);
  }

  async releaseSavepoint(conn: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]): Promise<void> {
    await this.driver.releaseSavepoint!(this.raw(conn), name, compile).catch(rethrow);
  }

  async releaseConnection(conn: DatabaseConnection): Promise<void> {
    try {
      await this.driver.releaseConnection(this.raw(conn));
    } finally {
      this.o.gate?.release();
    }
  }

  async destroy(): Promise<void> {
    await this.driver.destroy();
  }
}

function rethrow(error: unknown): never {
  throw toDatabaseError(error);
}
