import { sql, type Kysely, type RawBuilder } from "kysely";
import { isUniqueViolation, type Dialect } from "./db.js";
import type { Schema } from "./schema.js";

/** A live or dead instance as stored; `age_ms` is measured on the database's clock. */
export interface InstanceRow {
  id: string;
  host: string;
  pid: number;
  /** Bot names it may own. */
  bots: string[];
  started_ms: number;
  heartbeat_ms: number;
  /** Database now minus heartbeat, ms. */
  age_ms: number;
  /** The instance's own `--lease-ttl`, ms: dead once `age_ms` reaches it. */
  ttl_ms: number;
}

/** How long a dead instance's row is kept for `bots status`, ms (at least, and at least 20 TTLs). */
export const DEAD_INSTANCE_KEEP_MS = 600_000;

/** A bot's owner row: the owning instance (null while handed over) and the fencing epoch. */
export interface OwnerRow {
  bot: string;
  owner: string | null;
  epoch: number;
  changed_ms: number;
}

/** An owner's fencing token: writes carrying it happen only while `owner` owns `bot` at `epoch`. */
export interface OwnerFence {
  bot: string;
  owner: string;
  epoch: number;
}

/**
 * The fencing condition as an SQL predicate for a WHERE clause: the bot's `bot_owners` row still
 * names `fence.owner` at `fence.epoch`. Put it in the first write of a transaction (or in a
 * single-statement write): InnoDB takes a shared lock on the `bot_owners` row read by a
 * subquery of an UPDATE and keeps it to the commit, so a take-over (an UPDATE of that row) waits
 * for the transaction; SQLite serialises writers. Either way the write happens only while the
 * fence holds, and no take-over lands between the check and the commit.
 */
export function fenceHolds(fence: OwnerFence): RawBuilder<boolean> {
  return sql<boolean>`exists (select 1 from bot_owners where bot_owners.bot = ${fence.bot} and bot_owners.owner = ${fence.owner} and bot_owners.epoch = ${fence.epoch})`;
}

/**
 * Whether `fence.owner` still owns `fence.bot` at `fence.epoch`, read on `db` (a transaction's,
 * to check inside it).
 */
export async function fenceStillHolds(db: Kysely<Schema>, fence: OwnerFence): Promise<boolean> {
  const r = await db
    .selectFrom("bot_owners")
    .select("bot")
    .where("bot", "=", fence.bot)
    .where("owner", "=", fence.owner)
    .where("epoch", "=", fence.epoch)
    .executeTakeFirst();
  return r !== undefined;
}

/**
 * The database's own clock in epoch ms, as an SQL expression: MySQL `NOW(6)`, SQLite
 * `julianday('now')`. Heartbeats and liveness use only this clock, so hosts' clocks may differ.
 */
export function dbNowMs(dialect: Dialect): RawBuilder<number> {
  return dialect === "mysql"
    ? sql<number>`CAST(ROUND(UNIX_TIMESTAMP(NOW(6)) * 1000) AS SIGNED)`
    : sql<number>`CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)`;
}

/**
 * Instances and bot ownership for scale-out (migration 0009). Every change is one conditional
 * statement, so two instances racing for a bot cannot both win: taking a bot is an UPDATE that
 * requires the current owner to be absent or dead (its heartbeat older than the TTL on the
 * database clock) and raises the epoch; creating a missing row is an INSERT the primary key lets
 * only one instance win. No GET_LOCK (Galera refuses it).
 */
export class OwnersRepo {
  private readonly now: RawBuilder<number>;

  constructor(
    private readonly db: Kysely<Schema>,
    readonly dialect: Dialect,
  ) {
    this.now = dbNowMs(dialect);
  }

  /**
   * Registers (or re-registers) an instance with a fresh heartbeat.
   * @param bots names of the bots it may own
   * @param ttlMs its `--lease-ttl`, ms
   */
  async register(id: string, host: string, pid: number, bots: string[], ttlMs = 15_000): Promise<void> {
    const values = { id, host, pid, bots: JSON.stringify(bots), started_ms: this.now, heartbeat_ms: this.now, ttl_ms: ttlMs };
    const updated = await this.db
      .updateTable("instances")
      .set({ host, pid, bots: values.bots, started_ms: this.now, heartbeat_ms: this.now, ttl_ms: ttlMs })
      .where("id", "=", id)
      .executeTakeFirst();
    if (Number(updated.numUpdatedRows) === 1) return;
    try {
      await this.db.insertInto("instances").values(values).execute();
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
    }
  }

  /**
   * Writes the heartbeat (database time).
   * @returns false when the row is gone (removed as dead by another instance): register again
   */
  async heartbeat(id: string): Promise<boolean> {
    const res = await this.db.updateTable("instances").set({ heartbeat_ms: this.now }).where("id", "=", id).executeTakeFirst();
    if (Number(res.numUpdatedRows) === 1) return true;
    // MySQL counts unchanged rows as 0 (two beats in the same microsecond).
    return (await this.db.selectFrom("instances").select("id").where("id", "=", id).executeTakeFirst()) !== undefined;
  }

  /** Removes an instance row (clean shutdown, after its bots were handed over). */
  async unregister(id: string): Promise<void> {
    await this.db.deleteFrom("instances").where("id", "=", id).execute();
  }

  /** Every instance row with its heartbeat age on the database clock, oldest id first. */
  async instances(): Promise<InstanceRow[]> {
    const rows = await this.db.selectFrom("instances").selectAll().select(sql<number>`${this.now} - heartbeat_ms`.as("age_ms")).orderBy("id").execute();
    return rows.map((r) => ({
      id: r.id,
      host: r.host,
      pid: Number(r.pid),
      bots: parseBots(r.bots),
      started_ms: Number(r.started_ms),
      heartbeat_ms: Number(r.heartbeat_ms),
      age_ms: Number(r.age_ms),
      ttl_ms: Number(r.ttl_ms),
    }));
  }

  /**
   * Removes rows of instances dead for long (heartbeat older than 20 of their TTLs and than
   * {@link DEAD_INSTANCE_KEEP_MS}, database clock), so `bots status` does not list every past run.
   * @returns rows removed
   */
  async pruneDead(): Promise<number> {
    const res = await this.db
      .deleteFrom("instances")
      .where(sql<boolean>`heartbeat_ms < ${this.now} - ${DEAD_INSTANCE_KEEP_MS}`)
      .where(sql<boolean>`heartbeat_ms < ${this.now} - 20 * ttl_ms`)
      .executeTakeFirst();
    return Number(res.numDeletedRows);
  }

  /** Every ownership row. */
  async owners(): Promise<OwnerRow[]> {
    const rows = await this.db.selectFrom("bot_owners").selectAll().orderBy("bot").execute();
    return rows.map((r) => ({ bot: r.bot, owner: r.owner, epoch: Number(r.epoch), changed_ms: Number(r.changed_ms) }));
  }

  /** One bot's ownership row, if any. */
  async owner(bot: string): Promise<OwnerRow | undefined> {
    const r = await this.db.selectFrom("bot_owners").selectAll().where("bot", "=", bot).executeTakeFirst();
    return r && { bot: r.bot, owner: r.owner, epoch: Number(r.epoch), changed_ms: Number(r.changed_ms) };
  }

  /**
   * Takes a bot when it has no owner, or its owner's heartbeat is older than the owner's own TTL
   * (`instances.ttl_ms`, database clock), or its owner row is gone. Raises the epoch.
   * @returns the new epoch when `id` owns it now; undefined when another live instance does
   */
  async claim(bot: string, id: string): Promise<number | undefined> {
    const res = await this.db
      .updateTable("bot_owners")
      .set({ owner: id, epoch: sql`epoch + 1`, changed_ms: this.now })
      .where("bot", "=", bot)
      .where((eb) =>
        eb.or([
          eb("owner", "is", null),
          eb.not(
            eb.exists(
              eb
                .selectFrom("instances")
                .select(sql`1`.as("one"))
                .where("instances.id", "=", eb.ref("bot_owners.owner"))
                .where("instances.heartbeat_ms", ">", sql<number>`${this.now} - instances.ttl_ms`),
            ),
          ),
        ]),
      )
      .where((eb) => eb.or([eb("owner", "is", null), eb("owner", "!=", id)]))
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) === 0) {
      try {
        await this.db.insertInto("bot_owners").values({ bot, owner: id, epoch: 1, changed_ms: this.now }).execute();
      } catch (error) {
        if (!isUniqueViolation(error)) throw error;
      }
    }
    const row = await this.owner(bot);
    return row?.owner === id ? row.epoch : undefined;
  }

  /**
   * Takes a bot from an owner known to be dead though its heartbeat is recent (a process of this
   * host that no longer exists, after kill -9). Conditional on the owner still being `from`.
   * @returns the new epoch, or undefined when the owner changed meanwhile
   */
  async takeOver(bot: string, from: string, id: string): Promise<number | undefined> {
    const res = await this.db
      .updateTable("bot_owners")
      .set({ owner: id, epoch: sql`epoch + 1`, changed_ms: this.now })
      .where("bot", "=", bot)
      .where("owner", "=", from)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) return undefined;
    const row = await this.owner(bot);
    return row?.owner === id ? row.epoch : undefined;
  }

  /**
   * Gives a bot up (after its pipeline drained), so another instance can take it with the next
   * epoch. Conditional on still owning it at `epoch`.
   * @returns false when it was no longer ours
   */
  async release(bot: string, id: string, epoch: number): Promise<boolean> {
    const res = await this.db
      .updateTable("bot_owners")
      .set({ owner: null, changed_ms: this.now })
      .where("bot", "=", bot)
      .where("owner", "=", id)
      .where("epoch", "=", epoch)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  /** Gives up every bot still owned by `id` (its previous run's rows, at start). */
  async releaseAll(id: string): Promise<void> {
    await this.db.updateTable("bot_owners").set({ owner: null, changed_ms: this.now }).where("owner", "=", id).execute();
  }

  /** Whether `id` still owns the bot at `epoch` (the fencing check, as one read). */
  async holds(bot: string, id: string, epoch: number): Promise<boolean> {
    return fenceStillHolds(this.db, { bot, owner: id, epoch });
  }
}

function parseBots(text: string): string[] {
  try {
    const v: unknown = JSON.parse(text);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
  } catch {
    return [];
  }
}
