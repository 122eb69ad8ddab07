import { sql, type Kysely, type Selectable } from "kysely";
import { scrubSecrets } from "../secrets.js";
import { isUniqueViolation, transact } from "./db.js";
import type { CoachingCheckinsTable, CoachingGoalsTable, CoachingUsersTable, Schema } from "./schema.js";
import { priorEffect, recordEffect, type ToolEffectKey } from "./tool-effects.js";

/** A coaching user as stored; times epoch ms UTC. */
export type CoachingUser = Selectable<CoachingUsersTable>;
/** A goal as stored. */
export type GoalRow = Selectable<CoachingGoalsTable>;
/** A check-in as stored. */
export type CheckinRow = Selectable<CoachingCheckinsTable>;

/** A pause as stored (days inclusive). */
export interface PauseRow {
  id: number;
  from_day: string;
  until_day: string | null;
}

/** What {@link CoachingRepo.addCheckin} stores; `points` is computed from the k-th check-in of that goal and day. */
export interface NewCheckin {
  bot: string;
  user_id: string;
  goal_id: number;
  day: string;
  source: string;
  note?: string | null;
  /** Points of the k-th check-in of the goal that day (rules.checkinPoints). */
  pointsFor: (k: number) => number;
  /** The tool call recording it (`log_progress`); a call seen before for the message adds nothing. */
  effect?: ToolEffectKey;
}

/** Figures of `bots coaching stats` for one bot. */
export interface CoachingCounts {
  users: Record<string, number>;
  activeUsers: number;
  checkins: number;
  reminders: Record<string, number>;
  weekly: Record<string, number>;
  /** Hundredths of a credit spent on this bot's answers and proactive messages in the period. */
  cost: number;
}

const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));

/** Storage of features.coaching (migration 0008): users, goals, the check-in log, pauses, delivery claims. */
export class CoachingRepo {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly now: () => number = Date.now,
  ) {}

  /** One user, or undefined before their first /start. */
  async user(bot: string, userId: string): Promise<CoachingUser | undefined> {
    const r = await this.db.selectFrom("coaching_users").selectAll().where("bot", "=", bot).where("user_id", "=", userId).executeTakeFirst();
    return r && normUser(r);
  }

  /** Creates the user at the first onboarding step; a user that exists is left as it is. */
  async createUser(
    u: Pick<CoachingUser, "bot" | "user_id" | "chat_id" | "thread_key" | "timezone" | "day_starts_at" | "remind_at" | "step">,
  ): Promise<CoachingUser> {
    const at = this.now();
    try {
      await this.db
        .insertInto("coaching_users")
        .values({ ...u, name: null, status: "onboarding", draft: "{}", profile: null, created_ms: at, updated_ms: at })
        .execute();
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
    }
    return (await this.user(u.bot, u.user_id))!;
  }

  /** Updates a user's fields. */
  async updateUser(bot: string, userId: string, patch: Partial<Omit<CoachingUser, "bot" | "user_id" | "created_ms">>): Promise<void> {
    await this.db
      .updateTable("coaching_users")
      .set({ ...patch, updated_ms: this.now() })
      .where("bot", "=", bot)
      .where("user_id", "=", userId)
      .execute();
  }

  /** Users with a reminder time who may get proactive messages (status `active`). */
  async reminderCandidates(bot: string): Promise<CoachingUser[]> {
    const rows = await this.db.selectFrom("coaching_users").selectAll().where("bot", "=", bot).where("status", "=", "active").execute();
    return rows.map(normUser);
  }

  /** A user's goals, oldest first; archived ones only when asked. */
  async goals(bot: string, userId: string, withArchived = false): Promise<GoalRow[]> {
    let q = this.db.selectFrom("coaching_goals").selectAll().where("bot", "=", bot).where("user_id", "=", userId);
    if (!withArchived) q = q.where("status", "!=", "archived");
    return (await q.orderBy("id").execute()).map(normGoal);
  }

  /** Adds a goal. @returns its id */
  async addGoal(g: Pick<GoalRow, "bot" | "user_id" | "title" | "kind" | "target">): Promise<number> {
    const at = this.now();
    const r = await this.db
      .insertInto("coaching_goals")
      .values({ ...g, status: "active", created_ms: at, updated_ms: at })
      .executeTakeFirstOrThrow();
    return Number(r.insertId);
  }

  /** Changes a goal; its check-ins (the history) stay attached to it. */
  async updateGoal(id: number, patch: Partial<Pick<GoalRow, "title" | "kind" | "target" | "status">>): Promise<void> {
    await this.db
      .updateTable("coaching_goals")
      .set({ ...patch, updated_ms: this.now() })
      .where("id", "=", id)
      .execute();
  }

  /**
   * Stores a check-in with the points of the k-th check-in of that goal and day, in one
   * transaction so two at once cannot both be the first. With `c.effect`, the key is stored in
   * the same transaction; a key stored before adds nothing and returns the earlier check-in
   * (points 0 when it was undone since) with `repeated` set.
   */
  async addCheckin(c: NewCheckin): Promise<CheckinRow & { repeated: boolean }> {
    try {
      return await this.addCheckinOnce(c);
    } catch (error) {
      // A concurrent twin of the same call committed first: this one finds its key now.
      if (c.effect && isUniqueViolation(error)) return this.addCheckinOnce(c);
      throw error;
    }
  }

  private addCheckinOnce(c: NewCheckin): Promise<CheckinRow & { repeated: boolean }> {
    return transact(this.db, async (trx) => {
      const prior = c.effect ? await priorEffect(trx, c.effect) : undefined;
      if (prior) {
        const earlier = prior.ref === null ? undefined : await trx.selectFrom("coaching_checkins").selectAll().where("id", "=", prior.ref).executeTakeFirst();
        const gone = {
          id: prior.ref ?? 0,
          bot: c.bot,
          user_id: c.user_id,
          goal_id: c.goal_id,
          day: c.day,
          points: 0,
          source: c.source,
          note: c.note ?? null,
          created_ms: this.now(),
        };
        return { ...(earlier ? normCheckin(earlier) : gone), repeated: true };
      }
      const { n } = await trx
        .selectFrom("coaching_checkins")
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .where("goal_id", "=", c.goal_id)
        .where("day", "=", c.day)
        .executeTakeFirstOrThrow();
      const row = {
        bot: c.bot,
        user_id: c.user_id,
        goal_id: c.goal_id,
        day: c.day,
        points: c.pointsFor(Number(n) + 1),
        source: c.source,
        note: c.note ?? null,
        created_ms: this.now(),
      };
      const r = await trx.insertInto("coaching_checkins").values(row).executeTakeFirstOrThrow();
      if (c.effect) await recordEffect(trx, c.effect, Number(r.insertId), row.created_ms);
      return { ...row, id: Number(r.insertId), repeated: false };
    });
  }

  /** A user's check-ins on or after `fromDay` (all when omitted), oldest first. */
  async checkins(bot: string, userId: string, fromDay?: string): Promise<CheckinRow[]> {
    let q = this.db.selectFrom("coaching_checkins").selectAll().where("bot", "=", bot).where("user_id", "=", userId);
    if (fromDay) q = q.where("day", ">=", fromDay);
    return (await q.orderBy("id").execute()).map(normCheckin);
  }

  /** True when the user has any check-in for `day`. */
  async hasCheckin(bot: string, userId: string, day: string): Promise<boolean> {
    const r = await this.db
      .selectFrom("coaching_checkins")
      .select("id")
      .where("bot", "=", bot)
      .where("user_id", "=", userId)
      .where("day", "=", day)
      .limit(1)
      .executeTakeFirst();
    return r !== undefined;
  }

  /** Removes the user's latest check-in (/undo). @returns it, or undefined when there is none */
  async undoLast(bot: string, userId: string): Promise<CheckinRow | undefined> {
    return transact(this.db, async (trx) => {
      const last = await trx
        .selectFrom("coaching_checkins")
        .selectAll()
        .where("bot", "=", bot)
        .where("user_id", "=", userId)
        .orderBy("id", "desc")
        .limit(1)
        .executeTakeFirst();
      if (!last) return undefined;
      await trx.deleteFrom("coaching_checkins").where("id", "=", last.id).execute();
      return normCheckin(last);
    });
  }

  /** Total points of a user: the sum over their check-in log. */
  async points(bot: string, userId: string): Promise<number> {
    const r = await this.db
      .selectFrom("coaching_checkins")
      .select((eb) => eb.fn.sum<number>("points").as("p"))
      .where("bot", "=", bot)
      .where("user_id", "=", userId)
      .executeTakeFirst();
    return Number(r?.p ?? 0);
  }

  /** A user's pauses. */
  async pauses(bot: string, userId: string): Promise<PauseRow[]> {
    const rows = await this.db
      .selectFrom("coaching_pauses")
      .select(["id", "from_day", "until_day"])
      .where("bot", "=", bot)
      .where("user_id", "=", userId)
      .orderBy("id")
      .execute();
    return rows.map((r) => ({ ...r, id: Number(r.id) }));
  }

  /** Adds a pause (days inclusive; null until = until /resume). */
  async addPause(bot: string, userId: string, fromDay: string, untilDay: string | null): Promise<void> {
    await this.db.insertInto("coaching_pauses").values({ bot, user_id: userId, from_day: fromDay, until_day: untilDay, created_ms: this.now() }).execute();
  }

  /** Ends every pause still running after `lastDay` at `lastDay` (/resume). */
  async endPauses(bot: string, userId: string, lastDay: string): Promise<void> {
    await this.db
      .updateTable("coaching_pauses")
      .set({ until_day: lastDay })
      .where("bot", "=", bot)
      .where("user_id", "=", userId)
      .where((eb) => eb.or([eb("until_day", "is", null), eb("until_day", ">", lastDay)]))
      .execute();
  }

  /**
   * Claims the one delivery of `kind` for a user and day. The unique key (bot, user_id, kind,
   * day) makes this the guarantee against duplicates: a second process, or a restart, finds the
   * row and does not send.
   * @returns the claim's id, or null when it was claimed before
   */
  async claimDelivery(bot: string, userId: string, kind: string, day: string): Promise<number | null> {
    const at = this.now();
    try {
      const r = await this.db
        .insertInto("coaching_deliveries")
        .values({ bot, user_id: userId, kind, day, status: "claimed", message_id: null, error: null, created_ms: at, updated_ms: at })
        .executeTakeFirstOrThrow();
      return Number(r.insertId);
    } catch (error) {
      if (isUniqueViolation(error)) return null;
      throw error;
    }
  }

  /** Records how a claimed delivery ended. */
  async finishDelivery(id: number, status: "sent" | "failed", messageId: number | null, error: string | null = null): Promise<void> {
    await this.db
      .updateTable("coaching_deliveries")
      .set({ status, message_id: messageId, error: scrubSecrets(error) ?? null, updated_ms: this.now() })
      .where("id", "=", id)
      .execute();
  }

  /** Deliveries of a user (tests, /export). */
  async deliveries(bot: string, userId: string) {
    const rows = await this.db.selectFrom("coaching_deliveries").selectAll().where("bot", "=", bot).where("user_id", "=", userId).orderBy("id").execute();
    return rows.map((r) => ({ ...r, id: Number(r.id), message_id: num(r.message_id), created_ms: Number(r.created_ms), updated_ms: Number(r.updated_ms) }));
  }

  /** Erases everything coaching holds about a user, and their dialog in `messages` (/delete). */
  async deleteUser(bot: string, userId: string, threadKey: string): Promise<void> {
    await transact(this.db, async (trx) => {
      for (const t of ["coaching_checkins", "coaching_goals", "coaching_pauses", "coaching_deliveries", "coaching_users"] as const) {
        await trx.deleteFrom(t).where("bot", "=", bot).where("user_id", "=", userId).execute();
      }
      await trx.deleteFrom("messages").where("bot", "=", bot).where("thread_key", "=", threadKey).execute();
    });
  }

  /**
   * Figures for `bots coaching stats` since `sinceMs` (epoch ms UTC): users by status, users
   * with a check-in in the period, check-ins, reminders and weekly summaries by status, cost.
   */
  async counts(bot: string, sinceMs: number): Promise<CoachingCounts> {
    const byStatus = await this.db
      .selectFrom("coaching_users")
      .select(["status", (eb) => eb.fn.countAll<number>().as("n")])
      .where("bot", "=", bot)
      .groupBy("status")
      .execute();
    const ck = await this.db
      .selectFrom("coaching_checkins")
      .select([(eb) => eb.fn.countAll<number>().as("n"), sql<number>`count(distinct user_id)`.as("users")])
      .where("bot", "=", bot)
      .where("created_ms", ">=", sinceMs)
      .executeTakeFirstOrThrow();
    const del = await this.db
      .selectFrom("coaching_deliveries")
      .select(["kind", "status", (eb) => eb.fn.countAll<number>().as("n")])
      .where("bot", "=", bot)
      .where("created_ms", ">=", sinceMs)
      .groupBy(["kind", "status"])
      .execute();
    const cost = await this.db
      .selectFrom("messages")
      .select((eb) => eb.fn.sum<number>("cost").as("c"))
      .where("bot", "=", bot)
      .where("direction", "=", "out")
      .where("created_ms", ">=", sinceMs)
      .executeTakeFirst();
    const pick = (kind: string) => Object.fromEntries(del.filter((d) => d.kind === kind).map((d) => [d.status, Number(d.n)]));
    return {
      users: Object.fromEntries(byStatus.map((r) => [r.status, Number(r.n)])),
      activeUsers: Number(ck.users),
      checkins: Number(ck.n),
      reminders: pick("reminder"),
      weekly: pick("weekly"),
      cost: Number(cost?.c ?? 0),
    };
  }
}

function normUser(r: CoachingUser): CoachingUser {
  return { ...r, day_starts_at: Number(r.day_starts_at), remind_at: num(r.remind_at), created_ms: Number(r.created_ms), updated_ms: Number(r.updated_ms) };
}

function normGoal(r: GoalRow): GoalRow {
  return { ...r, id: Number(r.id), target: Number(r.target), created_ms: Number(r.created_ms), updated_ms: Number(r.updated_ms) };
}

function normCheckin(r: CheckinRow): CheckinRow {
  return { ...r, id: Number(r.id), goal_id: Number(r.goal_id), points: Number(r.points), created_ms: Number(r.created_ms) };
}
