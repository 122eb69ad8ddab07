import type { Kysely } from "kysely";
import { isUniqueViolation } from "./db.js";
import type { Schema } from "./schema.js";

/** A lease as stored: who holds it and until when (epoch ms UTC). */
export interface LeaseRow {
  name: string;
  /** Free-form holder id, e.g. `host:pid:random`. */
  holder: string;
  expires_ms: number;
}

/**
 * Cross-process locks with expiry (docs/architecture.md, "Storage": `leases`), e.g. `poll:2gis:<bot>` so overlapping cron
 * runs never poll the same bot at once. A holder that dies (kill -9) simply stops renewing; its
 * lease expires and the next run takes it over.
 *
 * Every operation is one atomic statement on both SQLite and MySQL: taking over an expired lease
 * is a conditional UPDATE (re-evaluated against the latest committed row on InnoDB, serialised on
 * SQLite), and creating a missing one is an INSERT that the primary key lets only one process win.
 */
export class LeasesRepo {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Takes the lease when it is free, expired, or already ours.
   * @param ttlMs how long it stays ours without {@link renew}, ms
   * @returns true when `holder` holds it now (until now + ttlMs)
   * @throws StorageError-like driver errors when the database is unreachable
   */
  async acquire(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const t = this.now();
    const expires_ms = t + ttlMs;
    const res = await this.db
      .updateTable("leases")
      .set({ holder, expires_ms })
      .where("name", "=", name)
      .where((eb) => eb.or([eb("expires_ms", "<=", t), eb("holder", "=", holder)]))
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) === 1) return true;
    try {
      await this.db.insertInto("leases").values({ name, holder, expires_ms }).execute();
      return true;
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
    }
    // MySQL reports 0 affected rows when an UPDATE changes nothing (same holder, same ms).
    const row = await this.get(name);
    return row?.holder === holder && row.expires_ms > t;
  }

  /**
   * Extends a lease we hold.
   * @returns false when it is no longer ours (it expired and another holder took it)
   */
  async renew(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const t = this.now();
    const res = await this.db
      .updateTable("leases")
      .set({ expires_ms: t + ttlMs })
      .where("name", "=", name)
      .where("holder", "=", holder)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) === 1) return true;
    return (await this.get(name))?.holder === holder;
  }

  /** Gives a lease back; does nothing when it is not ours any more. */
  async release(name: string, holder: string): Promise<void> {
    await this.db.deleteFrom("leases").where("name", "=", name).where("holder", "=", holder).execute();
  }

  /** The lease row, expired or not, if any. */
  async get(name: string): Promise<LeaseRow | undefined> {
    const row = await this.db.selectFrom("leases").selectAll().where("name", "=", name).executeTakeFirst();
    return row && { name: row.name, holder: row.holder, expires_ms: Number(row.expires_ms) };
  }
}
