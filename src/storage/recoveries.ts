import type { Kysely, Selectable } from "kysely";
import type { RecoveriesTable, Schema } from "./schema.js";

/** One recovery run as stored; times epoch ms UTC. */
export type RecoveryRow = Selectable<RecoveriesTable>;

/** Recovery runs of bots (migration 0005), for `bots status`. */
export class RecoveriesRepo {
  constructor(private readonly db: Kysely<Schema>) {}

  /** Stores one run. */
  async record(run: Omit<RecoveryRow, "id">): Promise<void> {
    await this.db.insertInto("recoveries").values(run).execute();
  }

  /** The newest run of a bot, if any. */
  async last(bot: string): Promise<RecoveryRow | undefined> {
    const r = await this.db.selectFrom("recoveries").selectAll().where("bot", "=", bot).orderBy("id", "desc").limit(1).executeTakeFirst();
    if (!r) return undefined;
    // mysql2 may hand BIGINT back as strings.
    return {
      ...r,
      id: Number(r.id),
      resumed: Number(r.resumed),
      refunded: Number(r.refunded),
      expired: Number(r.expired),
      unconfirmed: Number(r.unconfirmed),
      confirmed: Number(r.confirmed),
      started_ms: Number(r.started_ms),
      finished_ms: Number(r.finished_ms),
    };
  }
}
