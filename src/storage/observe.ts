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
 * Watches every statement a Kysely instance runs, at the driver (below Kysely, so pool
 * acquisition failures and transaction commits are seen too), and tells subscribers how each
 * ended. Used by `/healthz` to judge whether this process can record.
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
    let inTransaction = false;
    let wrote = false;
    conn.executeQuery = async <R>(query: CompiledQuery): Promise<QueryResult<R>> => {
      const text = query.sql;
      const isWrite = WRITE.test(text);
      const isCommit = COMMIT.test(text);
      if (BEGIN.test(text)) {
        inTransaction = true;
        wrote = false;
      }
      const tracked = isCommit || (isWrite && !inTransaction);
      const id = ++this.seq;
      const startedMs = this.now();
      if (tracked || isWrite) this.pending.set(id, startedMs);
      try {
        const result = await execute<R>(query);
        if (isWrite && inTransaction) wrote = true;
        else if (tracked && (!isCommit || wrote)) this.emit({ kind: "write", ok: true, startedMs, endedMs: this.now() });
        else this.emit({ kind: "read", ok: true, startedMs, endedMs: this.now() });
        return result;
      } catch (error) {
        this.emit({ kind: isWrite || isCommit ? "write" : "read", ok: false, error, startedMs, endedMs: this.now() });
        throw error;
      } finally {
        this.pending.delete(id);
        if (isCommit || ROLLBACK.test(text)) inTransaction = wrote = false;
      }
    };
  }
}
