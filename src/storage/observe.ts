import type { CompiledQuery, DatabaseConnection, Dialect as KyselyDialect, Driver, QueryResult } from "kysely";

/**
 * The outcome of one database operation as the driver saw it:
 * - `write`: an INSERT/UPDATE/DELETE/REPLACE outside a transaction, or a transaction's COMMIT
 *   after it wrote (a write inside a transaction counts only once its commit answers: SQLite
 *   may take an INSERT into its page cache and refuse the COMMIT with `SQLITE_FULL`);
 * - `read`: anything else (SELECT, BEGIN, ROLLBACK, a COMMIT of a transaction that only read);
 * - `connect`: taking a connection from the pool (MySQL), which fails while the server is unreachable.
 */
export interface QueryEvent {
  kind: "write" | "read" | "connect";
  /** False when the driver threw (`error` holds what it threw: a raw driver error). */
  ok: boolean;
  error?: unknown;
  /** When the operation began and ended, epoch ms. */
  startedMs: number;
  endedMs: number;
}

/** First keyword of a statement that changes rows (a CALL: the answer procedures of src/storage/procedures.ts, each its own transaction). */
const WRITE = /^\s*(insert|update|delete|replace|call)\b/i;
const BEGIN = /^\s*(begin|start\s+transaction)\b/i;
const COMMIT = /^\s*commit\b/i;
const ROLLBACK = /^\s*rollback\b(?!\s+to)/i;

/**
 * Watches every statement a database runs and tells subscribers how each ended: MySQL at
 * Kysely's driver ({@link wrap}: below Kysely, so pool acquisition failures and transaction
 * commits are seen too), SQLite at each run of a prepared statement ({@link runSync}: Kysely's
 * queries and the statements run without it alike). Used by `/healthz` to judge whether this
 * process can record.
 */
export class QueryObserver {
  private readonly listeners = new Set<(e: QueryEvent) => void>();
  /** Writes (and commits) sent and not answered yet: id → start, epoch ms (insertion order = oldest first). */
  private readonly pending = new Map<number, number>();
  private seq = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * Calls `listener` after every operation ends. A listener must not throw (a throw is ignored).
   * @returns unsubscribe
   */
  subscribe(listener: (e: QueryEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Start (epoch ms) of the oldest write or commit still waiting for the database, or undefined. */
  oldestPendingWriteMs(): number | undefined {
    return this.pending.values().next().value;
  }

  /** Wraps a Kysely dialect so its driver reports to this observer; the queries themselves are unchanged. */
  wrap(dialect: KyselyDialect): KyselyDialect {
    return {
      createAdapter: () => dialect.createAdapter(),
      createQueryCompiler: () => dialect.createQueryCompiler(),
      createIntrospector: (db) => dialect.createIntrospector(db),
      createDriver: () => this.observeDriver(dialect.createDriver()),
    };
  }

  private emit(e: QueryEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // An observer's fault never fails a query.
      }
    }
  }

  private observeDriver(driver: Driver): Driver {
    const acquire = driver.acquireConnection.bind(driver);
    const seen = new WeakSet<DatabaseConnection>();
    driver.acquireConnection = async () => {
      const startedMs = this.now();
      let conn: DatabaseConnection;
      try {
        conn = await acquire();
      } catch (error) {
        this.emit({ kind: "connect", ok: false, error, startedMs, endedMs: this.now() });
        throw error;
      }
      if (!seen.has(conn)) {
        seen.add(conn);
        this.observeConnection(conn);
      }
      return conn;
    };
    return driver;
  }

  /** Patches the connection in place (drivers release it through private members of the object itself). */
  private observeConnection(conn: DatabaseConnection): void {
    const execute = conn.executeQuery.bind(conn);
    const watch = newWatch();
    conn.executeQuery = async <R>(query: CompiledQuery): Promise<QueryResult<R>> => {
      const s = this.begin(watch, query.sql);
      try {
        const result = await execute<R>(query);
        this.succeeded(watch, s);
        return result;
      } catch (error) {
        this.failed(s, error);
        throw error;
      } finally {
        this.end(watch, s);
      }
    };
  }

  /**
   * Runs one statement of `text` that `execute` runs synchronously (better-sqlite3) on the
   * connection `watch` follows, and reports how it ended, as for a statement run through a
   * wrapped dialect.
   * @throws what `execute` throws
   */
  runSync<T>(watch: StatementWatch, text: string, execute: () => T): T {
    const s = this.begin(watch, text);
    try {
      const result = execute();
      this.succeeded(watch, s);
      return result;
    } catch (error) {
      this.failed(s, error);
      throw error;
    } finally {
      this.end(watch, s);
    }
  }

  /** Reports a statement that could not be prepared (it did not run). */
  failedToPrepare(text: string, error: unknown): void {
    const now = this.now();
    this.emit({ kind: WRITE.test(text) || COMMIT.test(text) ? "write" : "read", ok: false, error, startedMs: now, endedMs: now });
  }

  private begin(watch: StatementWatch, text: string): Statement {
    const isWrite = WRITE.test(text);
    const isCommit = COMMIT.test(text);
    if (BEGIN.test(text)) {
      watch.inTransaction = true;
      watch.wrote = false;
    }
    const tracked = isCommit || (isWrite && !watch.inTransaction);
    const id = ++this.seq;
    const startedMs = this.now();
    if (tracked || isWrite) this.pending.set(id, startedMs);
    return { id, text, isWrite, isCommit, tracked, startedMs };
  }

  private succeeded(watch: StatementWatch, s: Statement): void {
    if (s.isWrite && watch.inTransaction) watch.wrote = true;
    else if (s.tracked && (!s.isCommit || watch.wrote)) this.emit({ kind: "write", ok: true, startedMs: s.startedMs, endedMs: this.now() });
    else this.emit({ kind: "read", ok: true, startedMs: s.startedMs, endedMs: this.now() });
  }

  private failed(s: Statement, error: unknown): void {
    this.emit({ kind: s.isWrite || s.isCommit ? "write" : "read", ok: false, error, startedMs: s.startedMs, endedMs: this.now() });
  }

  private end(watch: StatementWatch, s: Statement): void {
    this.pending.delete(s.id);
    if (s.isCommit || ROLLBACK.test(s.text)) watch.inTransaction = watch.wrote = false;
  }
}

/** One connection's transaction as its statements showed it (BEGIN … COMMIT or ROLLBACK). */
export interface StatementWatch {
  inTransaction: boolean;
  /** A write ran since BEGIN. */
  wrote: boolean;
}

/** A watch for a connection outside any transaction. */
export function newWatch(): StatementWatch {
  return { inTransaction: false, wrote: false };
}

/** One statement being watched. */
interface Statement {
  id: number;
  text: string;
  isWrite: boolean;
  isCommit: boolean;
  /** Reported as a write when it succeeds (a write outside a transaction, or a COMMIT). */
  tracked: boolean;
  startedMs: number;
}
